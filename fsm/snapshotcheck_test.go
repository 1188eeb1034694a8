package fsm

import (
	"bytes"
	"errors"
	"testing"
)

func TestVerifySnapshotAcceptsIntactAndRejectsEveryDamage(t *testing.T) {
	good := snapshotBytes(t, sampleStore(t).Snapshot())
	if err := VerifySnapshot(bytes.NewReader(good)); err != nil {
		t.Fatalf("intact snapshot: %v", err)
	}
	for i := range good {
		b := append([]byte(nil), good...)
		b[i] ^= 0x20
		if err := VerifySnapshot(bytes.NewReader(b)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d of %d flipped: %v, want ErrCorrupt", i, len(good), err)
		}
	}
	for _, n := range []int{0, 5, len(snapshotMagic) + 1, len(good) - 1} {
		if err := VerifySnapshot(bytes.NewReader(good[:n])); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: %v, want ErrCorrupt", n, err)
		}
	}
	if err := VerifySnapshot(bytes.NewReader(append(append([]byte(nil), good...), 0))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("trailing byte: %v, want ErrCorrupt", err)
	}
}

// VerifySnapshot never panics, and never rejects a stream Restore accepts.
func FuzzVerifySnapshot(f *testing.F) {
	f.Add(snapshotBytes(f, sampleStore(f).Snapshot()))
	f.Add([]byte(snapshotMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		verr := VerifySnapshot(bytes.NewReader(b))
		if rerr := New(Config{}).Restore(bytes.NewReader(b)); rerr == nil && verr != nil {
			t.Fatalf("Restore accepts what VerifySnapshot rejects: %v", verr)
		}
	})
}
