package fsm

import (
	"bytes"
	"testing"
)

func snapshotBytes(t testing.TB, sn *Snapshot) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := sn.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo reported %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

// snapshotBytesEqual compares two snapshots' bytes; ignoreApplied compares
// them as if both had the same applied index.
func snapshotBytesEqual(t testing.TB, a, b *Snapshot, ignoreApplied bool) bool {
	t.Helper()
	if ignoreApplied {
		ca, cb := *a, *b
		ca.applied, cb.applied = 0, 0
		a, b = &ca, &cb
	}
	return bytes.Equal(snapshotBytes(t, a), snapshotBytes(t, b))
}
