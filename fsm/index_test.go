package fsm

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestIndexesAgreeWithAFullScan drives random commands (tricky names and
// locations, moves between servers, reservations and deletes) and checks,
// after every batch and after a snapshot round trip, that the server and
// reservation indexes answer exactly what a filtered full scan answers,
// in the same order, from every starting point.
func TestIndexesAgreeWithAFullScan(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 14))
	s := New(DefaultConfig())
	idx := uint64(0)
	for i := 0; i < 400; i++ {
		idx++
		s.Apply(idx, randomBatch(r))
		checkIndexes(t, s, "live")
	}
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	restored := New(DefaultConfig())
	if err := restored.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	checkIndexes(t, restored, "restored")
}

// checkIndexes fails unless the server and reservation indexes of s answer
// exactly what a filtered full scan answers, in the same order, from every
// starting point.
func checkIndexes(t *testing.T, s *Store, when string) {
	t.Helper()
	prefixes := []string{"", "b", "be", "be1", "be1!", "be1!d", "be2!", "be10!ssd", "a", "a!b!", "noexcl", "zz", "be2!default"}
	v := s.View()
	var all []Entry
	v.ScanName("", func(e Entry) bool { all = append(all, e); return true })
	var wantRes, gotRes []string
	for _, e := range all {
		if e.State == StateReserved {
			wantRes = append(wantRes, e.Name)
		}
	}
	v.ScanReserved(func(e Entry) bool { gotRes = append(gotRes, e.Name); return true })
	if strings.Join(gotRes, ",") != strings.Join(wantRes, ",") {
		t.Fatalf("%s: reserved %q, want %q", when, gotRes, wantRes)
	}
	afters := append([]string{""}, trickyNames...)
	for _, p := range prefixes {
		for _, after := range afters {
			var want, got []string
			for _, e := range all {
				if strings.HasPrefix(e.Location, p) && (after == "" || Compare(e.Name, after) > 0) {
					want = append(want, e.Name+"@"+e.Location)
				}
			}
			v.ScanLocationFrom(p, after, func(e Entry) bool { got = append(got, e.Name+"@"+e.Location); return true })
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("%s: ScanLocationFrom(%q, %q) = %q, want %q", when, p, after, got, want)
			}
			// Stopping early stops.
			n := 0
			v.ScanLocationFrom(p, after, func(Entry) bool { n++; return false })
			if n != min(1, len(want)) {
				t.Fatalf("%s: ScanLocationFrom(%q, %q) went on after false: %d calls", when, p, after, n)
			}
		}
	}
}
