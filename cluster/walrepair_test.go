package cluster

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

func walEntry(idx, term uint64) *raft.Log {
	return &raft.Log{Index: idx, Term: term, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("entry %d term %d", idx, term))}
}

func storeRange(t *testing.T, w *wal.WAL, from, to, term uint64) {
	t.Helper()
	for i := from; i <= to; i++ {
		if err := w.StoreLog(walEntry(i, term)); err != nil {
			t.Fatalf("store %d: %v", i, err)
		}
	}
}

// openRawWAL opens dir with raft-wal alone, as the node did before the
// repair existed.
// segSize 0 keeps raft-wal's default segment size.
func openRawWAL(t *testing.T, dir string, segSize int) (*wal.WAL, *metadb.BoltMetaDB) {
	t.Helper()
	meta := &metadb.BoltMetaDB{}
	if segSize == 0 {
		segSize = wal.DefaultSegmentSize
	}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentSize(segSize))
	if err != nil {
		t.Fatalf("open wal: %v", err)
	}
	return w, meta
}

// checkEntries reads [1, last] back and compares each entry's term and data.
func checkEntries(t *testing.T, logs raft.LogStore, last uint64, termOf func(uint64) uint64) {
	t.Helper()
	if got, err := logs.LastIndex(); err != nil || got != last {
		t.Fatalf("LastIndex = %d, %v; want %d", got, err, last)
	}
	for i := uint64(1); i <= last; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		want := walEntry(i, termOf(i))
		if l.Term != want.Term || !bytes.Equal(l.Data, want.Data) {
			t.Fatalf("entry %d = term %d %q; want term %d %q", i, l.Term, l.Data, want.Term, want.Data)
		}
	}
}

// A suffix truncation inside the open tail segment (raft clearing a
// conflicting suffix) leaves a segment "sealed" without an index block;
// raft-wal v0.4.0 cannot read it after a restart (hashicorp/raft-wal#31).
// openWAL repairs it and every entry reads back unchanged.
func TestWALTailTruncationSurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), walDirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	w, meta := openRawWAL(t, dir, 0)
	storeRange(t, w, 1, 20, 1)
	if err := w.DeleteRange(16, 20); err != nil { // "clearing log suffix"
		t.Fatal(err)
	}
	storeRange(t, w, 16, 25, 2)
	_ = w.Close()
	_ = meta.Close()
	termOf := func(i uint64) uint64 {
		if i >= 16 {
			return 2
		}
		return 1
	}

	// The state itself: raft-wal alone fails to read the truncated segment.
	raw, rawMeta := openRawWAL(t, dir, 0)
	var l raft.Log
	err := raw.GetLog(5, &l)
	_ = raw.Close()
	_ = rawMeta.Close()
	if err == nil {
		t.Fatalf("raft-wal read entry 5 of a segment sealed without index; the test no longer reproduces raft-wal#31")
	}
	t.Logf("raft-wal alone: %v", err)

	// The repaired dir reads back, takes appends and reopens cleanly.
	st, err := openWAL(dir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, st.logs, 25, termOf)
	storeRange(t, st.logs.(*wal.WAL), 26, 30, 2)
	if err := st.close(); err != nil {
		t.Fatal(err)
	}
	st, err = openWAL(dir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	checkEntries(t, st.logs, 30, termOf)
}

// A process killed between the append that sealed the tail segment and the
// rotation's metadata commit leaves a tail sealed on disk but open in the
// metadata; raft-wal v0.4.0 then refuses every append with ErrSealed.
// openWAL records the seal and starts a new tail.
func TestWALTailSealedOnDiskButNotInMetadataAcceptsAppends(t *testing.T) {
	dir := filepath.Join(t.TempDir(), walDirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// Small segments: a few entries fill one and the append seals it.
	w, meta := openRawWAL(t, dir, 256)
	// Append until an append seals a segment and the rotation has recorded
	// it, with nothing in the new tail yet.
	var last uint64
	var st types.PersistentState
	for last = 1; ; last++ {
		storeRange(t, w, last, last, 1)
		var err error
		deadline := time.Now().Add(300 * time.Millisecond)
		for {
			if st, err = meta.Load(dir); err != nil {
				t.Fatal(err)
			}
			if len(st.Segments) >= 2 || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if len(st.Segments) >= 2 {
			break
		}
		if last > 100 {
			t.Fatal("no segment sealed in 100 appends")
		}
	}
	_ = w.Close()
	n := len(st.Segments)
	newTail, sealed := st.Segments[n-1], st.Segments[n-2]
	if sealed.MaxIndex != last {
		t.Fatalf("sealed segment ends at %d, want the last append %d", sealed.MaxIndex, last)
	}
	// Undo the rotation in the metadata, as a crash before its commit
	// leaves it: the sealed segment is the open tail again and the tail
	// created after it never existed.
	sealed.SealTime, sealed.MaxIndex, sealed.IndexStart = time.Time{}, 0, 0
	st.Segments = append(st.Segments[:n-2], sealed)
	if err := meta.CommitState(st); err != nil {
		t.Fatal(err)
	}
	_ = meta.Close()
	_ = os.Remove(filepath.Join(dir, segment.FileName(newTail)))

	raw, rawMeta := openRawWAL(t, dir, 256)
	err := raw.StoreLog(walEntry(last+1, 1))
	_ = raw.Close()
	_ = rawMeta.Close()
	if err == nil {
		t.Fatalf("raft-wal appended to a tail sealed on disk; the test no longer reproduces the stuck state")
	}
	t.Logf("raft-wal alone: %v", err)

	ws, err := openWAL(dir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ws.close()
	one := func(uint64) uint64 { return 1 }
	checkEntries(t, ws.logs, last, one)
	storeRange(t, ws.logs.(*wal.WAL), last+1, last+20, 1)
	checkEntries(t, ws.logs, last+20, one)
}
