package gateway

import "testing"

func TestMailboxNamesMapLikeCyrus(t *testing.T) {
	alt := newMailboxNamer(DefaultConfig().Names)
	std := newMailboxNamer(NamesConfig{UnixHierarchySep: true})
	dots := newMailboxNamer(NamesConfig{})
	alice := User{Local: "alice"}
	carol := User{Local: "carol", Domain: "example.com"}
	tests := []struct {
		name     string
		n        mailboxNamer
		u        User
		external string
		internal string
	}{
		{"INBOX", alt, alice, "INBOX", "user.alice"},
		{"altnamespace personal folder", alt, alice, "Sent", "user.alice.Sent"},
		{"altnamespace nested personal folder", alt, alice, "a/b", "user.alice.a.b"},
		{"dot inside a level is stored as ^", alt, alice, "v1.2", "user.alice.v1^2"},
		{"other user's folder", alt, alice, "Other Users/bob/Shared", "user.bob.Shared"},
		{"other user's INBOX", alt, alice, "Other Users/bob", "user.bob"},
		{"shared folder", alt, alice, "Shared Folders/shared/proj", "shared.proj"},
		{"virtual domain", alt, carol, "Sent", "example.com!user.carol.Sent"},
		{"virtual domain shared", alt, carol, "Shared Folders/news", "example.com!news"},
		{"standard namespace personal", std, alice, "INBOX/Sent", "user.alice.Sent"},
		{"standard namespace other user", std, alice, "user/bob/Shared", "user.bob.Shared"},
		{"standard namespace shared", std, alice, "shared/proj", "shared.proj"},
		{"netnews separator", dots, alice, "INBOX.Sent", "user.alice.Sent"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.n.toInternal(tc.u, tc.external)
			if !ok || got != tc.internal {
				t.Errorf("toInternal(%q) = %q, %v; want %q", tc.external, got, ok, tc.internal)
			}
			back, ok := tc.n.toExternal(tc.u, tc.internal)
			if !ok || back != tc.external {
				t.Errorf("toExternal(%q) = %q, %v; want %q", tc.internal, back, ok, tc.external)
			}
		})
	}
}

func TestMailboxNamesRejectWhatCannotExist(t *testing.T) {
	alt := newMailboxNamer(DefaultConfig().Names)
	alice := User{Local: "alice"}
	for _, ext := range []string{"", "/a", "a/", "a//b", "Other Users", "Shared Folders"} {
		if got, ok := alt.toInternal(alice, ext); ok {
			t.Errorf("toInternal(%q) = %q, want no name", ext, got)
		}
	}
	for _, internal := range []string{"other.org!user.bob", "DELETED.user.alice.x.5F00"} {
		if got, ok := alt.toExternal(alice, internal); ok {
			t.Errorf("toExternal(%q) = %q, want hidden from alice", internal, got)
		}
	}
}

func TestACLRightsEvaluatedLikeCyrus(t *testing.T) {
	tests := []struct {
		name, acl, id, want string
	}{
		{"own entry", "alice\tlrs\t", "alice", "lrs"},
		{"anyone applies to everyone", "anyone\tlr\t", "alice", "lr"},
		{"union of entries", "alice\ti\tanyone\tlr\t", "alice", "ilr"},
		{"negative right removes", "anyone\tlr\t-alice\tl\t", "alice", "r"},
		{"negative anyone removes from all", "alice\tlrs\t-anyone\ts\t", "alice", "lr"},
		{"someone else's entry", "bob\tlrswipkxtecda\t", "alice", ""},
		{"anonymous is not a logged-in user", "anonymous\tlr\t", "alice", ""},
		{"groups are not known to the gateway", "group:staff\tlr\t", "alice", ""},
		{"malformed tail ignored", "alice\tlr\tbob", "alice", "lr"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := aclRights(tc.acl, tc.id); got != tc.want {
				t.Errorf("aclRights(%q, %q) = %q, want %q", tc.acl, tc.id, got, tc.want)
			}
		})
	}
	if !mayLookup("alice", "user.alice", "user.alice.Trash", "") {
		t.Error("a user must always see their own folders (implicit owner rights)")
	}
}
