package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// storeWithRevisions applies n ACTIVATEs, one per log entry.
func storeWithRevisions(t *testing.T, cfg Config, n int) *Store {
	t.Helper()
	s := New(cfg)
	for i := 1; i <= n; i++ {
		s.Apply(uint64(i), []Command{{Op: OpActivate, Name: fmt.Sprintf("user.u%d", i%7), Location: fmt.Sprintf("be%d!p", i)}})
	}
	return s
}

func checkEvents(t *testing.T, evs []Event, from uint64, n int) {
	t.Helper()
	if len(evs) != n {
		t.Fatalf("from %d: got %d events, want %d", from, len(evs), n)
	}
	for i, ev := range evs {
		if ev.Revision != from+1+uint64(i) {
			t.Fatalf("from %d: event %d has revision %d", from, i, ev.Revision)
		}
	}
}

func TestEventsSinceResumesAndReportsCompaction(t *testing.T) {
	const size, total = 10, 25
	s := storeWithRevisions(t, Config{HistorySize: size}, total)
	// Kept: revisions 16..25; a resume from 15 is still served.
	tests := []struct {
		from      uint64
		max       int
		want      int
		compacted bool
	}{
		{from: 0, compacted: true},
		{from: 14, compacted: true}, // one below the boundary
		{from: 15, want: 10},        // exactly the boundary
		{from: 16, want: 9},         // one above
		{from: 20, want: 5},
		{from: 20, max: 2, want: 2},
		{from: 20, max: -1, want: 5},
		{from: 24, want: 1},
		{from: 25, want: 0}, // current
		{from: 26, want: 0}, // future: wait on Changed
	}
	for _, tc := range tests {
		evs, err := s.EventsSince(tc.from, tc.max)
		if tc.compacted {
			var ce *CompactedError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCompacted) {
				t.Fatalf("from %d: err %v, want CompactedError", tc.from, err)
			}
			if *ce != (CompactedError{Requested: tc.from, Compact: 15, Current: 25}) {
				t.Fatalf("from %d: %+v", tc.from, *ce)
			}
			continue
		}
		if err != nil {
			t.Fatalf("from %d: %v", tc.from, err)
		}
		checkEvents(t, evs, tc.from, tc.want)
	}
}

func TestEventsSinceFromZeroServesWholeShortHistory(t *testing.T) {
	s := storeWithRevisions(t, Config{HistorySize: 10}, 10)
	evs, err := s.EventsSince(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, evs, 0, 10)
	if evs, err := New(DefaultConfig()).EventsSince(0, 10); err != nil || len(evs) != 0 {
		t.Fatalf("empty store: %v %v", evs, err)
	}
}

func TestEventsSinceWithNoHistoryIsAlwaysCompactedBehind(t *testing.T) {
	s := storeWithRevisions(t, Config{HistorySize: -1}, 3)
	if _, err := s.EventsSince(2, 0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("err %v", err)
	}
	if evs, err := s.EventsSince(3, 0); err != nil || len(evs) != 0 {
		t.Fatalf("current: %v %v", evs, err)
	}
}

func TestHistoryKeepsExactlyLastEventsAcrossManyCompactions(t *testing.T) {
	const total = 5000
	for _, size := range []int{1, 2, 7, 100, histChunk - 1, histChunk, histChunk + 1, 3000, total} {
		s := New(Config{HistorySize: size})
		var snaps []*Snapshot
		for i := 1; i <= total; i++ {
			s.Apply(uint64(i), []Command{{Op: OpActivate, Name: fmt.Sprintf("user.u%d", i%7), Location: fmt.Sprintf("be%d!p", i)}})
			if i%1500 == 0 {
				snaps = append(snaps, s.Snapshot())
			}
		}
		evs, err := s.EventsSince(total-uint64(size), 0)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		checkEvents(t, evs, total-uint64(size), size)
		if evs[len(evs)-1].Entry.Location != fmt.Sprintf("be%d!p", total) {
			t.Fatalf("size %d: last event %+v", size, evs[len(evs)-1])
		}
		if _, err := s.EventsSince(total-1-uint64(size), 0); size < total && !errors.Is(err, ErrCompacted) {
			t.Fatalf("size %d: err %v", size, err)
		}
		// Snapshots taken while chunks filled and dropped still hold
		// exactly their events.
		for _, sn := range snaps {
			r := New(Config{HistorySize: size})
			if err := r.Restore(bytes.NewReader(snapshotBytes(t, sn))); err != nil {
				t.Fatal(err)
			}
			keep := min(uint64(size), sn.Revision())
			evs, err := r.EventsSince(sn.Revision()-keep, 0)
			if err != nil {
				t.Fatalf("size %d snapshot at %d: %v", size, sn.Revision(), err)
			}
			checkEvents(t, evs, sn.Revision()-keep, int(keep))
			if evs[len(evs)-1].Entry.Location != fmt.Sprintf("be%d!p", sn.Revision()) {
				t.Fatalf("size %d: snapshot's last event %+v", size, evs[len(evs)-1])
			}
		}
	}
}

func TestEventsSinceAfterRestoreAnswersLikeOriginal(t *testing.T) {
	orig := storeWithRevisions(t, Config{HistorySize: 10}, 25)
	var buf bytes.Buffer
	if _, err := orig.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	restored := New(Config{HistorySize: 10})
	if err := restored.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	for from := uint64(0); from <= 27; from++ {
		a, errA := orig.EventsSince(from, 0)
		b, errB := restored.EventsSince(from, 0)
		if fmt.Sprint(a, errA) != fmt.Sprint(b, errB) {
			t.Fatalf("from %d: original %v %v, restored %v %v", from, a, errA, b, errB)
		}
	}
	// A smaller history on the restoring node keeps the newest events.
	small := New(Config{HistorySize: 4})
	if err := small.Restore(bytes.NewReader(snapshotBytes(t, orig.Snapshot()))); err != nil {
		t.Fatal(err)
	}
	evs, err := small.EventsSince(21, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, evs, 21, 4)
	if _, err := small.EventsSince(20, 0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("err %v", err)
	}
}

func TestChangedIsClosedByApplyAndRestore(t *testing.T) {
	s := New(DefaultConfig())
	ch := s.Changed()
	snap := snapshotBytes(t, s.Snapshot())
	s.Apply(1, []Command{{Op: OpDelete, Name: "user.none"}}) // fails, but the index advances
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed by Apply")
	}
	ch = s.Changed()
	if err := s.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed by Restore")
	}
}
