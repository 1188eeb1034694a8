package fsm

import (
	"slices"
	"strings"
	"testing"
)

var scanNames = []string{
	"user.a", "user.a.b", "user.a-b", "user.ab", "user.a.b.c", "user.b",
	"example.com!user.a", "example.com!user.a.b", "example.com.au!user.a", "example.org!user.a",
	"examplexcom", "example.com", "example", "shared.folder", "DELETED.user.a.65E33B49",
	"a!b!c", "be2!x.y",
}

func scanStore(t *testing.T) *Store {
	t.Helper()
	s := New(DefaultConfig())
	for i, n := range scanNames {
		loc := "be1!default"
		if i%3 == 1 {
			loc = "be2!"
		} else if i%3 == 2 {
			loc = "be10!ssd"
		}
		if rs := s.Apply(uint64(i+1), []Command{{Op: OpActivate, Name: n, Location: loc}}); rs[0].Code != CodeOK {
			t.Fatalf("activate %q: %+v", n, rs[0])
		}
	}
	return s
}

func collect(scan func(func(Entry) bool)) []string {
	var out []string
	scan(func(e Entry) bool { out = append(out, e.Name); return true })
	return out
}

// brute computes the expected names by definition: filter, then sort with
// Compare.
func brute(keep func(string) bool) []string {
	var out []string
	for _, n := range scanNames {
		if keep(n) {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, Compare)
	return out
}

func TestScanNameReturnsExactlyNamesWithPrefixInCompareOrder(t *testing.T) {
	v := scanStore(t).View()
	prefixes := []string{"", "user.a", "user.a.", "user.a-", "user.", "u", "example", "example.", "example.com",
		"example.com!", "example.com!user.a", "example.com!user.a.", "example.c", "a!", "a!b", "a!b!", "be2!x",
		"zzz", "user.a\x1fb", "\x1d", "e"}
	for _, p := range prefixes {
		want := brute(func(n string) bool { return strings.HasPrefix(n, p) })
		got := collect(func(fn func(Entry) bool) { v.ScanName(p, fn) })
		if !slices.Equal(got, want) {
			t.Errorf("ScanName(%q)\n got %q\nwant %q", p, got, want)
		}
	}
}

func TestScanNameFromPaginatesStrictlyAfter(t *testing.T) {
	v := scanStore(t).View()
	for _, p := range []string{"", "user.a", "example", "example."} {
		all := collect(func(fn func(Entry) bool) { v.ScanName(p, fn) })
		for _, after := range append(slices.Clone(scanNames), "", "user.a.a", "example.com!", "zz") {
			want := brute(func(n string) bool { return strings.HasPrefix(n, p) && (after == "" || Compare(n, after) > 0) })
			got := collect(func(fn func(Entry) bool) { v.ScanNameFrom(p, after, fn) })
			if !slices.Equal(got, want) {
				t.Errorf("ScanNameFrom(%q, %q)\n got %q\nwant %q", p, after, got, want)
			}
		}
		// Paging two at a time reassembles the full scan.
		var paged []string
		after := ""
		for {
			var page []string
			v.ScanNameFrom(p, after, func(e Entry) bool { page = append(page, e.Name); return len(page) < 2 })
			if len(page) == 0 {
				break
			}
			paged = append(paged, page...)
			after = page[len(page)-1]
		}
		if !slices.Equal(paged, all) {
			t.Errorf("paged %q != full %q", paged, all)
		}
	}
}

func TestScanStopsWhenCallbackReturnsFalse(t *testing.T) {
	v := scanStore(t).View()
	n := 0
	v.ScanName("example.", func(Entry) bool { n++; return false })
	if n != 1 {
		t.Fatalf("ScanName visited %d after stop", n)
	}
	n = 0
	v.ScanLocation("", func(Entry) bool { n++; return n < 3 })
	if n != 3 {
		t.Fatalf("ScanLocation visited %d, want 3", n)
	}
}

func TestScanLocationFiltersByLocationPrefixInCompareOrder(t *testing.T) {
	s := scanStore(t)
	v := s.View()
	for _, p := range []string{"", "be1", "be1!", "be2!", "be10", "be1!default", "nope"} {
		var want []string
		for _, n := range brute(func(string) bool { return true }) {
			e, _ := s.Get(n)
			if strings.HasPrefix(e.Location, p) {
				want = append(want, n)
			}
		}
		got := collect(func(fn func(Entry) bool) { v.ScanLocation(p, fn) })
		if !slices.Equal(got, want) {
			t.Errorf("ScanLocation(%q)\n got %q\nwant %q", p, got, want)
		}
	}
}

func TestViewIsPointInTime(t *testing.T) {
	s := scanStore(t)
	v := s.View()
	rev, n := v.Revision(), v.Len()
	before := collect(func(fn func(Entry) bool) { v.ScanName("", fn) })
	st := v.Stats()
	s.Apply(100, []Command{
		{Op: OpDelete, Name: "user.a"},
		{Op: OpActivate, Name: "user.zz", Location: "be9!x"},
		{Op: OpReserve, Name: "user.b", Location: "be2!"},
	})
	if v.Revision() != rev || v.Len() != n || v.AppliedIndex() != uint64(len(scanNames)) {
		t.Fatalf("view moved: rev %d len %d", v.Revision(), v.Len())
	}
	if after := collect(func(fn func(Entry) bool) { v.ScanName("", fn) }); !slices.Equal(after, before) {
		t.Fatalf("view content changed")
	}
	if e, ok := v.Get("user.a"); !ok || e.State != StateActive {
		t.Fatalf("view lost deleted entry: %+v %v", e, ok)
	}
	if _, ok := s.Get("user.a"); ok {
		t.Fatal("store still has deleted entry")
	}
	if got := v.Stats(); !slices.Equal(got.Servers, st.Servers) || got.Active != st.Active {
		t.Fatalf("view stats changed: %+v vs %+v", got, st)
	}
}

func TestStatsCountPerStateAndServerSorted(t *testing.T) {
	s := New(DefaultConfig())
	s.Apply(1, []Command{
		{Op: OpActivate, Name: "user.a", Location: "be2!default"},
		{Op: OpActivate, Name: "user.b", Location: "be1!default"},
		{Op: OpReserve, Name: "user.c", Location: "be1!ssd"},
		{Op: OpActivate, Name: "user.d", Location: "noexcl"},
		{Op: OpActivate, Name: "user.e", Location: "be2!x"},
		{Op: OpDeactivate, Name: "user.e", Location: "be3!y"}, // moves server be2 -> be3
		{Op: OpActivate, Name: "user.f", Location: "be4!"},
		{Op: OpDelete, Name: "user.f"}, // be4 disappears
	})
	want := Stats{Active: 3, Reserved: 2, Servers: []ServerStats{
		{"be1", 1, 1}, {"be2", 1, 0}, {"be3", 0, 1}, {"noexcl", 1, 0},
	}}
	for _, got := range []Stats{s.Stats(), s.View().Stats()} {
		if got.Active != want.Active || got.Reserved != want.Reserved || !slices.Equal(got.Servers, want.Servers) {
			t.Fatalf("stats\n got %+v\nwant %+v", got, want)
		}
	}
}
