package fsm

import (
	"slices"
	"strings"
	"testing"
)

func TestCompareSortsLikeCyrus36MailboxesDB(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{
			name: "dot sorts before dash (dbname, not strcmp)",
			in:   []string{"user.foo-bar", "user.foo.bar", "user.foo"},
			want: []string{"user.foo", "user.foo.bar", "user.foo-bar"},
		},
		{
			name: "transcript LIST order",
			in:   []string{"user.bob", "user.alice.Sent", "shared1", "user.alice", "DELETED.tmpbox2.6B0AC2D9"},
			want: []string{"DELETED.tmpbox2.6B0AC2D9", "shared1", "user.alice", "user.alice.Sent", "user.bob"},
		},
		{
			name: "domain keeps its dots and sorts with 0x1D",
			in:   []string{"example.com!user.bob", "example.com!user.alice.x", "example.com.au!user.a", "user.zed"},
			want: []string{"example.com!user.alice.x", "example.com!user.bob", "example.com.au!user.a", "user.zed"},
		},
		{
			name: "projects subfolder before Projects-old",
			in:   []string{"user.alice.Projects-old", "user.alice.Projects.x"},
			want: []string{"user.alice.Projects.x", "user.alice.Projects-old"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := slices.Clone(tc.in)
			slices.SortFunc(got, Compare)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDBNameKeyRoundTrips(t *testing.T) {
	for _, n := range []string{"", "user.a", "a!b.c!d.e", "example.com!user.bob.Sent", "x!", "DELETED.user.x.Trash.65E33B49"} {
		if got := NameFromDBKey(DBNameKey(n)); got != n {
			t.Errorf("round trip %q -> %q", n, got)
		}
	}
}

// TestCheckKeyAcceptsExactlyTheKeysOfValidNames compares checkKey with its
// definition (the key of a name checkName accepts) on every string of up
// to five bytes over the bytes that matter, and on the length limits.
func TestCheckKeyAcceptsExactlyTheKeysOfValidNames(t *testing.T) {
	alphabet := []byte{'a', '.', '!', 0x1D, 0x1F, 0, '\n'}
	want := func(k string) bool {
		name := NameFromDBKey(k)
		return checkName(name) == nil && DBNameKey(name) == k
	}
	keys := []string{strings.Repeat("a", MaxNameLen), strings.Repeat("a", MaxNameLen+1)}
	var grow func(prefix []byte)
	grow = func(prefix []byte) {
		keys = append(keys, string(prefix))
		if len(prefix) == 5 {
			return
		}
		for _, c := range alphabet {
			grow(append(prefix, c))
		}
	}
	grow(nil)
	for _, k := range keys {
		if got := checkKey(k) == nil; got != want(k) {
			t.Fatalf("checkKey(%q) accepts = %v, want %v", k, got, want(k))
		}
	}
}
