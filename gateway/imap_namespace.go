package gateway

import (
	"strings"

	"github.com/emersion/go-imap/v2"
)

// mailboxNamer converts between the mailbox names an IMAP client uses
// and Cyrus internal names, as Cyrus imapd does for a logged-in user
// (docs/gateway-murder.md has the table). The gateway needs the internal
// name only to find a mailbox in the directory; it hands the client's own
// name to the backend, which applies the same rules.
type mailboxNamer struct {
	alt          bool   // Cyrus altnamespace
	sep          byte   // '/' with unixhierarchysep, else '.'
	userPrefix   string // "Other Users" (altnamespace only)
	sharedPrefix string // "Shared Folders" (altnamespace only)
}

func newMailboxNamer(c NamesConfig) mailboxNamer {
	n := mailboxNamer{alt: c.AltNamespace, sep: '.', userPrefix: c.UserPrefix, sharedPrefix: c.SharedPrefix}
	if c.UnixHierarchySep {
		n.sep = '/'
	}
	return n
}

// namespace is what NAMESPACE answers.
func (n mailboxNamer) namespace() *imap.NamespaceData {
	d := rune(n.sep)
	if n.alt {
		return &imap.NamespaceData{
			Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: d}},
			Other:    []imap.NamespaceDescriptor{{Prefix: n.userPrefix + string(n.sep), Delim: d}},
			Shared:   []imap.NamespaceDescriptor{{Prefix: n.sharedPrefix + string(n.sep), Delim: d}},
		}
	}
	return &imap.NamespaceData{
		Personal: []imap.NamespaceDescriptor{{Prefix: "INBOX" + string(n.sep), Delim: d}},
		Other:    []imap.NamespaceDescriptor{{Prefix: "user" + string(n.sep), Delim: d}},
		Shared:   []imap.NamespaceDescriptor{{Prefix: "", Delim: d}},
	}
}

// toInternal maps a client's mailbox name to the internal name, for user
// u. ok is false for names that cannot exist (empty levels, the bare
// namespace prefixes).
func (n mailboxNamer) toInternal(u User, ext string) (string, bool) {
	sep := string(n.sep)
	if ext == "" || strings.HasPrefix(ext, sep) || strings.HasSuffix(ext, sep) || strings.Contains(ext, sep+sep) {
		return "", false
	}
	var name string
	head, rest, hasRest := strings.Cut(ext, sep)
	switch {
	case strings.EqualFold(head, "INBOX"):
		name = u.Inbox()
		if hasRest {
			name = stripDomain(name) + "." + n.level(rest)
		} else {
			return name, true
		}
	case n.alt && head == n.userPrefix:
		if !hasRest {
			return "", false
		}
		name = "user." + n.level(rest)
	case n.alt && head == n.sharedPrefix:
		if !hasRest {
			return "", false
		}
		name = n.level(rest)
	case n.alt:
		name = stripDomain(u.Inbox()) + "." + n.level(ext)
	case head == "user":
		if !hasRest {
			return "", false
		}
		name = "user." + n.level(rest)
	default:
		name = n.level(ext)
	}
	if u.Domain != "" {
		name = u.Domain + "!" + name
	}
	return name, true
}

// level converts hierarchy levels written with the client separator to
// the internal '.' form ('.' inside a level becomes '^' with
// unixhierarchysep, as Cyrus stores it).
func (n mailboxNamer) level(s string) string {
	if n.sep == '.' {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, ".", "^"), "/", ".")
}

func (n mailboxNamer) unlevel(s string) string {
	if n.sep == '.' {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, ".", "/"), "^", ".")
}

// toExternal maps an internal name to what user u sees; ok is false for
// names outside u's domain and for names no client can see (DELETED.*).
func (n mailboxNamer) toExternal(u User, internal string) (string, bool) {
	dom, name := "", internal
	if d, rest, ok := strings.Cut(internal, "!"); ok {
		dom, name = d, rest
	}
	if dom != u.Domain || strings.HasPrefix(name, "DELETED.") {
		return "", false
	}
	sep := string(n.sep)
	inbox := stripDomain(u.Inbox())
	switch {
	case name == inbox:
		return "INBOX", true
	case strings.HasPrefix(name, inbox+"."):
		rest := n.unlevel(name[len(inbox)+1:])
		if n.alt {
			return rest, true
		}
		return "INBOX" + sep + rest, true
	case strings.HasPrefix(name, "user."):
		rest := n.unlevel(name[len("user."):])
		if n.alt {
			return n.userPrefix + sep + rest, true
		}
		return "user" + sep + rest, true
	case n.alt:
		return n.sharedPrefix + sep + n.unlevel(name), true
	default:
		return n.unlevel(name), true
	}
}

// owner returns the internal INBOX name that owns an internal mailbox
// name ("" for shared mailboxes).
func owner(internal string) string {
	dom, name := "", internal
	if d, rest, ok := strings.Cut(internal, "!"); ok {
		dom, name = d+"!", rest
	}
	rest, ok := strings.CutPrefix(name, "user.")
	if !ok {
		return ""
	}
	user, _, _ := strings.Cut(rest, ".")
	return dom + "user." + user
}

// parent returns the internal parent name, or "" at the top.
func parent(internal string) string {
	i := strings.LastIndexByte(internal, '.')
	if i < 0 || i < strings.IndexByte(internal, '!') {
		return ""
	}
	return internal[:i]
}

func stripDomain(name string) string {
	if _, rest, ok := strings.Cut(name, "!"); ok {
		return rest
	}
	return name
}
