package fsm

import (
	"errors"
	"fmt"
	"strings"
)

// DBNameKey maps a Cyrus internal mailbox name to the key Cyrus 3.6+ uses in
// mailboxes.db ("dbname"), whose bytewise order is the order in which Cyrus
// iterates mailboxes and in which ctl_mboxlist -m and the mupdate slave expect
// LIST and UPDATE output (docs/mupdate.md §9, cyrus-imapd #4946).
//
// The domain part ends at the first '!' and becomes domain+0x1D; every '.'
// after it (every '.' when there is no domain) becomes 0x1F. So
// "user.foo.bar" sorts before "user.foo-bar", unlike strcmp.
//
// The mapping is invertible (see NameFromDBKey) for names without the bytes
// 0x1D and 0x1F, which Validate rejects.
func DBNameKey(name string) string {
	start := 0
	b := []byte(name)
	if i := strings.IndexByte(name, '!'); i >= 0 {
		b[i] = 0x1D
		start = i + 1
	}
	for i := start; i < len(b); i++ {
		if b[i] == '.' {
			b[i] = 0x1F
		}
	}
	return string(b)
}

// NameFromDBKey is the inverse of DBNameKey.
func NameFromDBKey(key string) string {
	b := []byte(key)
	for i := range b {
		switch b[i] {
		case 0x1D:
			b[i] = '!'
		case 0x1F:
			b[i] = '.'
		}
	}
	return string(b)
}

// checkKey accepts exactly the keys DBNameKey makes of names checkName
// accepts, without building the name (Restore checks every key). Before
// the domain separator (the first 0x1D or '!', which must be 0x1D) a key
// keeps its '.'s; after it, or everywhere when there is none, every '.'
// is 0x1F and no 0x1D follows.
func checkKey(key string) error {
	if key == "" || len(key) > MaxNameLen {
		return checkName(key)
	}
	sep := strings.IndexAny(key, "!\x1d")
	if sep >= 0 && key[sep] != 0x1D {
		return errors.New("domain separator is not 0x1D")
	}
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c == 0 || c == '\r' || c == '\n':
			return fmt.Errorf("forbidden byte 0x%02x at %d", c, i)
		case i < sep && c == 0x1F, i > sep && (c == '.' || c == 0x1D):
			return fmt.Errorf("byte 0x%02x at %d is not what DBNameKey makes", c, i)
		}
	}
	return nil
}

// Compare orders two internal mailbox names the way Cyrus 3.6+ mailboxes.db
// does. It is the one ordering function every sorted output uses.
func Compare(a, b string) int {
	return strings.Compare(DBNameKey(a), DBNameKey(b))
}
