package gateway

import (
	"errors"
	"strings"
)

// ErrInvalidUser is returned for a login or recipient name that cannot be
// a Cyrus user. Callers treat it exactly like an unknown user, so an
// attacker learns nothing from the difference.
var ErrInvalidUser = errors.New("gateway: invalid user name")

// Namer maps login names and LMTP recipients to Cyrus internal mailbox
// names the way Cyrus 3.x does with unixhierarchysep on: the internal
// separator is '.', so a '.' inside a user name is stored as '^'.
type Namer struct {
	// VirtualDomains mirrors Cyrus "virtdomains": when on, "bob@example.com"
	// lives at "example.com!user.bob".
	VirtualDomains bool
	// DefaultDomain mirrors Cyrus "defaultdomain": users in it are stored
	// without a domain prefix ("alice@default.example" is "user.alice").
	DefaultDomain string
	// Lowercase mirrors Cyrus "username_tolower" (on by default in 3.x).
	Lowercase bool
}

// User is a login name split the way Cyrus splits it.
type User struct {
	Local  string // localpart as the backend knows it
	Domain string // "" for the default domain or without virtual domains
}

// Login returns the name to present to a backend: "local" or
// "local@domain".
func (u User) Login() string {
	if u.Domain == "" {
		return u.Local
	}
	return u.Local + "@" + u.Domain
}

// Inbox returns the Cyrus internal name of the user's INBOX.
func (u User) Inbox() string {
	local := strings.ReplaceAll(u.Local, ".", "^")
	if u.Domain == "" {
		return "user." + local
	}
	return u.Domain + "!user." + local
}

// ParseLogin canonicalises an IMAP/POP3 login name. Without virtual
// domains a domain part is accepted only when it is the default domain (the
// backend could not find any other user), so "alice@other" is an invalid
// user rather than a silent alias of "alice".
func (n Namer) ParseLogin(login string) (User, error) {
	local, domain, hasDomain := strings.Cut(login, "@")
	if n.Lowercase {
		local = strings.ToLower(local)
	}
	domain = strings.ToLower(domain)
	switch {
	case !hasDomain:
		domain = ""
	case domain == "":
		return User{}, ErrInvalidUser
	case strings.EqualFold(domain, n.DefaultDomain):
		domain = ""
	case !n.VirtualDomains:
		return User{}, ErrInvalidUser
	}
	u := User{Local: local, Domain: domain}
	if !validLocal(u.Local) || (domain != "" && !validDomain(domain)) {
		return User{}, ErrInvalidUser
	}
	return u, nil
}

// Recipient is an LMTP recipient resolved to the mailbox that routes it.
type Recipient struct {
	// Mailbox is the internal name looked up in the directory: the user's
	// INBOX, or the shared folder for "+folder@domain" addresses.
	Mailbox string
	// User is set for user deliveries (empty Local for shared folders).
	User User
}

// ParseRecipient resolves an LMTP recipient the way Cyrus lmtpd does:
// "user+detail@domain" delivers to user's INBOX (the detail picks a folder
// on the same backend), "+folder@domain" to a shared folder. Without
// virtual domains lmtpd ignores the domain part entirely.
func (n Namer) ParseRecipient(addr string) (Recipient, error) {
	local, domain, _ := strings.Cut(addr, "@")
	user, detail, _ := strings.Cut(local, "+")
	domain = strings.ToLower(domain)
	if !n.VirtualDomains || strings.EqualFold(domain, n.DefaultDomain) {
		domain = ""
	}
	if domain != "" && !validDomain(domain) {
		return Recipient{}, ErrInvalidUser
	}
	if user == "" {
		folder := strings.ReplaceAll(detail, "/", ".")
		if folder == "" || !validMailbox(folder) {
			return Recipient{}, ErrInvalidUser
		}
		if domain != "" {
			folder = domain + "!" + folder
		}
		return Recipient{Mailbox: folder}, nil
	}
	if n.Lowercase {
		user = strings.ToLower(user)
	}
	u := User{Local: user, Domain: domain}
	if !validLocal(u.Local) {
		return Recipient{}, ErrInvalidUser
	}
	return Recipient{Mailbox: u.Inbox(), User: u}, nil
}

// validLocal rejects what cannot appear in a Cyrus userid: separators of
// either hierarchy style, the domain separator '!', IMAP wildcards, the
// '^' that encodes dots, spaces and control bytes. It also bounds the
// length (Cyrus caps mailbox names at 490 bytes).
func validLocal(s string) bool {
	if s == "" || len(s) > 255 || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || strings.IndexByte(`/!%*^"\`, c) >= 0 {
			return false
		}
	}
	return true
}

func validDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c >= 0x80) {
			return false
		}
	}
	return true
}

func validMailbox(s string) bool {
	if len(s) > 490 || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f || c == '!' || c == '%' || c == '*' {
			return false
		}
	}
	return true
}
