package fsm

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// TestSnapshotWriteCompactsAStoreGrownByApplies proves the memory side of
// compaction: applies in key order leave the B-tree nodes half full, and
// writing a snapshot rebuilds them dense, which shows as live heap.
func TestSnapshotWriteCompactsAStoreGrownByApplies(t *testing.T) {
	const n = 200_000
	s := New(Config{HistorySize: -1})
	populateRealistic(s, n, 1000)
	grown := heapInUse()
	if _, err := s.Snapshot().WriteTo(io.Discard); err != nil {
		t.Fatal(err)
	}
	saved := (float64(grown) - float64(heapInUse())) / n
	t.Logf("compaction saved %.1f B/mailbox", saved)
	// Two trees of pointers, from about 16 to about 8 bytes per entry.
	if saved < 10 {
		t.Fatalf("compaction saved %.1f B/mailbox, want ≥ 10", saved)
	}
	if s.Len() != n {
		t.Fatalf("%d entries after compaction, want %d", s.Len(), n)
	}
}

// TestCompactionKeepsTheChangesAppliedWhileTheSnapshotWasWritten takes a
// snapshot of a store, applies more random changes (moves between servers,
// reservations, deletes) before writing it, and checks that the store then
// holds exactly what a store that applied the same entries without a
// snapshot holds, with indexes that agree with a full scan; and that the
// compaction is dropped, not half done, when the history no longer reaches
// back to the snapshot or the store was restored meanwhile.
func TestCompactionKeepsTheChangesAppliedWhileTheSnapshotWasWritten(t *testing.T) {
	for _, tc := range []struct {
		name      string
		history   int
		restore   bool
		compacted bool
	}{
		{name: "history covers the changes", history: 0, compacted: true},
		{name: "history too short", history: 10},
		{name: "no history", history: -1},
		{name: "restored meanwhile", history: 0, restore: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, 14))
			s, ref := New(Config{HistorySize: tc.history}), New(Config{HistorySize: tc.history})
			idx := uint64(0)
			apply := func(batches int) {
				for range batches {
					idx++
					b := randomBatch(r)
					s.Apply(idx, b)
					ref.Apply(idx, b)
				}
			}
			apply(300)
			sn := s.Snapshot()
			if sn.compactOnto == nil {
				t.Fatal("a store grown from empty did not ask for compaction")
			}
			apply(100)
			if tc.restore {
				if err := s.Restore(bytes.NewReader(snapshotBytes(t, ref.Snapshot()))); err != nil {
					t.Fatal(err)
				}
			}
			before := s.st.tree
			if _, err := sn.WriteTo(io.Discard); err != nil {
				t.Fatal(err)
			}
			if compacted := s.st.tree != before; compacted != tc.compacted {
				t.Fatalf("compacted = %v, want %v", compacted, tc.compacted)
			}
			if !bytes.Equal(snapshotBytes(t, s.Snapshot()), snapshotBytes(t, ref.Snapshot())) {
				t.Fatal("the store differs from one that applied the same entries without a snapshot")
			}
			checkIndexes(t, s, "after compaction")
			apply(50)
			checkIndexes(t, s, "after more applies")
		})
	}
}

// A compaction given up (the history no longer reached back to its
// snapshot) leaves the store due one; a snapshot taken with nothing applied
// meanwhile compacts it, and so does a restore.
func TestCompactionStaysDueUntilASnapshotManagesIt(t *testing.T) {
	s := New(Config{HistorySize: 10})
	populateRealistic(s, 1000, 100)
	if !s.CompactionDue() {
		t.Fatal("a store grown from empty is not due a compaction")
	}
	sn := s.Snapshot()
	populateRealistic(s, 1100, 100) // 1,100 changes, more than the history holds
	if _, err := sn.WriteTo(io.Discard); err != nil {
		t.Fatal(err)
	}
	if !s.CompactionDue() {
		t.Fatal("compaction no longer due after a snapshot gave it up")
	}
	if _, err := s.Snapshot().WriteTo(io.Discard); err != nil {
		t.Fatal(err)
	}
	if s.CompactionDue() {
		t.Fatal("compaction still due after a snapshot with nothing applied meanwhile")
	}
	r := New(Config{})
	populateRealistic(r, 1000, 100)
	if err := r.Restore(bytes.NewReader(snapshotBytes(t, s.Snapshot()))); err != nil {
		t.Fatal(err)
	}
	if r.CompactionDue() {
		t.Fatal("compaction due after a restore")
	}
}
