package gateway

import (
	"errors"
	"testing"
)

func TestParseLoginMapsToCyrusInternalNames(t *testing.T) {
	plain := Namer{Lowercase: true, DefaultDomain: "example.org"}
	virt := Namer{Lowercase: true, VirtualDomains: true, DefaultDomain: "example.org"}
	caseKeep := Namer{}
	tests := []struct {
		name  string
		n     Namer
		login string
		inbox string
		as    string // name presented to the backend
	}{
		{"plain user", plain, "alice", "user.alice", "alice"},
		{"username_tolower", plain, "Alice", "user.alice", "alice"},
		{"case kept when configured", caseKeep, "Alice", "user.Alice", "Alice"},
		{"dot becomes caret", plain, "john.smith", "user.john^smith", "john.smith"},
		{"default domain stripped", plain, "alice@EXAMPLE.org", "user.alice", "alice"},
		{"virtual domain", virt, "bob@Example.COM", "example.com!user.bob", "bob@example.com"},
		{"virtual domain with dots", virt, "j.doe@example.com", "example.com!user.j^doe", "j.doe@example.com"},
		{"virtual domains, default domain", virt, "carol@example.org", "user.carol", "carol"},
		{"virtual domains, no domain", virt, "dave", "user.dave", "dave"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := tc.n.ParseLogin(tc.login)
			if err != nil {
				t.Fatal(err)
			}
			if u.Inbox() != tc.inbox || u.Login() != tc.as {
				t.Fatalf("ParseLogin(%q) = inbox %q login %q, want %q %q", tc.login, u.Inbox(), u.Login(), tc.inbox, tc.as)
			}
		})
	}
}

func TestParseLoginRejectsNamesCyrusCannotHold(t *testing.T) {
	plain := Namer{Lowercase: true}
	virt := Namer{VirtualDomains: true}
	for _, tc := range []struct {
		n     Namer
		login string
	}{
		{plain, ""}, {plain, "a/b"}, {plain, "a b"}, {plain, "a!b"}, {plain, "a*"}, {plain, "a%"},
		{plain, "a^b"}, {plain, ".alice"}, {plain, "alice."}, {plain, "a..b"}, {plain, "a\x00b"},
		{plain, "alice@other.org"}, // no virtual domains: other domains do not exist
		{virt, "alice@"}, {virt, "@example.com"}, {virt, "a@b@c"}, {virt, "a@exa mple.com"},
	} {
		if u, err := tc.n.ParseLogin(tc.login); !errors.Is(err, ErrInvalidUser) {
			t.Errorf("ParseLogin(%q) = %+v, %v; want ErrInvalidUser", tc.login, u, err)
		}
	}
}

func TestParseRecipientLikeCyrusLMTPD(t *testing.T) {
	plain := Namer{Lowercase: true}
	virt := Namer{Lowercase: true, VirtualDomains: true, DefaultDomain: "example.org"}
	tests := []struct {
		name    string
		n       Namer
		addr    string
		mailbox string
	}{
		{"domain ignored without virtual domains", plain, "Alice@anything.example", "user.alice"},
		{"detail routes by user", plain, "alice+lists@example.com", "user.alice"},
		{"shared folder", plain, "+shared.news@example.com", "shared.news"},
		{"shared folder with slash", plain, "+shared/news@example.com", "shared.news"},
		{"virtual domain", virt, "bob+x@Example.COM", "example.com!user.bob"},
		{"virtual domain default", virt, "carol@example.org", "user.carol"},
		{"virtual shared folder", virt, "+board@example.com", "example.com!board"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.n.ParseRecipient(tc.addr)
			if err != nil || r.Mailbox != tc.mailbox {
				t.Fatalf("ParseRecipient(%q) = %q, %v; want %q", tc.addr, r.Mailbox, err, tc.mailbox)
			}
		})
	}
	for _, bad := range []string{"+@example.com", "a/b@example.com", "@example.com", "+x*@example.com"} {
		if r, err := plain.ParseRecipient(bad); err == nil {
			t.Errorf("ParseRecipient(%q) = %+v, want error", bad, r)
		}
	}
}
