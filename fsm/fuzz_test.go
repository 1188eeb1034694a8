package fsm

import (
	"bytes"
	"reflect"
	"slices"
	"testing"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/ and run as ordinary tests.

func FuzzDecodeCommands(f *testing.F) {
	f.Add(EncodeCommands([]Command{{Op: OpReserve, Name: "user.a", Location: "be1!default", Identity: "be1", Time: 1}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		cmds, err := DecodeCommands(b)
		if err != nil {
			if cmds != nil {
				t.Fatal("commands returned with an error")
			}
			return
		}
		again, err := DecodeCommands(EncodeCommands(cmds))
		if err != nil || (len(cmds) > 0 && !reflect.DeepEqual(again, cmds)) {
			t.Fatalf("re-encoding does not round trip: %v", err)
		}
		s := New(Config{HistorySize: 8})
		rs := s.Apply(1, cmds)
		if len(rs) != len(cmds) {
			t.Fatalf("%d results for %d commands", len(rs), len(cmds))
		}
		for i, c := range cmds {
			if (Validate(c) != nil) != (rs[i].Code == CodeInvalid) {
				t.Fatalf("command %d: Validate and Apply disagree: %+v", i, rs[i])
			}
		}
		checkInvariants(t, s)
	})
}

func FuzzRestore(f *testing.F) {
	f.Add(snapshotBytes(f, sampleStore(f).Snapshot()))
	f.Fuzz(fuzzRestoreBody)
}

func fuzzRestoreBody(t *testing.T, b []byte) {
	for _, in := range [][]byte{b, resealed(b)} {
		s := New(Config{HistorySize: 16})
		s.Apply(1, []Command{{Op: OpActivate, Name: "user.keep", Location: "be1!x"}})
		before := dumpStore(s)
		if err := s.Restore(bytes.NewReader(in)); err != nil {
			if !equalDumps(before, dumpStore(s)) {
				t.Fatalf("failed Restore changed the store: %v", err)
			}
			continue
		}
		checkInvariants(t, s)
		// What was accepted writes out and restores to the same state.
		r := New(Config{HistorySize: 16})
		if err := r.Restore(bytes.NewReader(snapshotBytes(t, s.Snapshot()))); err != nil {
			t.Fatalf("re-restore: %v", err)
		}
		if !equalDumps(dumpStore(s), dumpStore(r)) {
			t.Fatal("re-restored state differs")
		}
		s.Apply(s.AppliedIndex()+1, []Command{{Op: OpReserve, Name: "user.keep", Location: "be1!x"}})
		checkInvariants(t, s)
	}
}

func resealed(b []byte) []byte {
	if len(b) < 4 {
		return b
	}
	return reseal(b)
}

// checkInvariants verifies what every reachable state satisfies: valid,
// canonical, strictly ordered keys; revisions within bounds; Stats equal to
// a recount; history dense and ending at the current revision.
func checkInvariants(t testing.TB, s *Store) {
	t.Helper()
	v := s.View()
	var recount Stats
	per := map[string]*ServerStats{}
	prev := ""
	v.ScanName("", func(e Entry) bool {
		if err := checkName(e.Name); err != nil {
			t.Fatalf("invalid name %q: %v", e.Name, err)
		}
		if prev != "" && Compare(prev, e.Name) >= 0 {
			t.Fatalf("order: %q before %q", prev, e.Name)
		}
		if e.CreateRevision == 0 || e.CreateRevision > e.ModRevision || e.ModRevision > v.Revision() {
			t.Fatalf("revisions of %+v at %d", e, v.Revision())
		}
		if got, ok := v.Get(e.Name); !ok || got != e {
			t.Fatalf("Get(%q) = %+v, scan says %+v", e.Name, got, e)
		}
		srv := per[e.Server()]
		if srv == nil {
			srv = &ServerStats{Server: e.Server()}
			per[e.Server()] = srv
		}
		switch e.State {
		case StateActive:
			recount.Active++
			srv.Active++
			if e.ReservedBy != "" || e.ReservedAt != 0 {
				t.Fatalf("active entry with reservation %+v", e)
			}
		case StateReserved:
			recount.Reserved++
			srv.Reserved++
			if e.ACL != "" {
				t.Fatalf("reserved entry with ACL %+v", e)
			}
		default:
			t.Fatalf("state %v", e.State)
		}
		prev = e.Name
		return true
	})
	for _, ss := range per {
		recount.Servers = append(recount.Servers, *ss)
	}
	slices.SortFunc(recount.Servers, func(a, b ServerStats) int {
		if a.Server < b.Server {
			return -1
		}
		if a.Server > b.Server {
			return 1
		}
		return 0
	})
	st := v.Stats()
	if st.Active != recount.Active || st.Reserved != recount.Reserved || !slices.Equal(st.Servers, recount.Servers) {
		t.Fatalf("stats %+v, recount %+v", st, recount)
	}
	if v.Len() != int(recount.Active+recount.Reserved) {
		t.Fatalf("Len %d, counted %d", v.Len(), recount.Active+recount.Reserved)
	}
	checkInterner(t, s)
	evs, err := s.EventsSince(s.Revision()-uint64(s.st.hist.view().len()), 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range evs {
		if want := s.Revision() - uint64(len(evs)) + 1 + uint64(i); ev.Revision != want {
			t.Fatalf("history event %d has revision %d, want %d", i, ev.Revision, want)
		}
		if (ev.Type == EventPut && ev.Entry.ModRevision != ev.Revision) || ev.Entry.ModRevision > ev.Revision {
			t.Fatalf("event %+v has entry mod revision %d", ev, ev.Entry.ModRevision)
		}
	}
}

// checkInterner verifies the live reference counts: every meta in the table
// is used by exactly refs live records, no unused meta is kept, and every
// location and identity string is counted once per meta holding it.
func checkInterner(t testing.TB, s *Store) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	in := &s.st.in
	uses := map[*meta]int{}
	s.st.tree.Ascend(func(r *record) bool { uses[r.meta]++; return true })
	if len(uses) != len(in.metas) {
		t.Fatalf("%d metas in use, %d in the table", len(uses), len(in.metas))
	}
	strUses := map[string]int{}
	for m, n := range uses {
		if in.metas[m.metaKey] != m || m.refs != n {
			t.Fatalf("meta %+v: table %p, refs %d, used %d", m.metaKey, in.metas[m.metaKey], m.refs, n)
		}
		for _, str := range []string{m.loc, m.by} {
			if str != "" {
				strUses[str]++
			}
		}
	}
	if len(strUses) != len(in.strs) {
		t.Fatalf("%d strings in use, %d in the table", len(strUses), len(in.strs))
	}
	for str, n := range strUses {
		if r := in.strs[str]; r == nil || r.refs != n {
			t.Fatalf("string %q: table %+v, used by %d metas", str, r, n)
		}
	}
}
