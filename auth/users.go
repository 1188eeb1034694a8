// Package auth checks the passwords and roles of the identities that log in
// to rookery's MUPDATE front: Cyrus backends (writers), frontend mupdate
// slaves and tools (readers).
//
// Passwords are kept only as bcrypt hashes, in an htpasswd-style users file
// ("name:hash" per line). Because Cyrus backends open a new connection and
// log in for every mailbox operation, a bcrypt verification per login would
// put tens of milliseconds of CPU on the hot path; Authenticator therefore
// remembers successful verifications for a while, keyed by a keyed hash of
// the credentials, never by the password itself.
package auth

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Users maps identity names to bcrypt hashes. It is immutable once built.
type Users struct {
	hashes map[string]string
}

// ErrBadUsersFile is wrapped by every error ParseUsers returns.
var ErrBadUsersFile = errors.New("auth: bad users file")

// ParseUsers reads "name:bcrypt-hash" lines. Blank lines and lines starting
// with '#' are skipped. Anything that is not a bcrypt hash is refused, so a
// plaintext password can never be configured by mistake; errors name the
// line, never its contents.
func ParseUsers(r io.Reader) (*Users, error) {
	u := &Users{hashes: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		switch {
		case !ok || name == "":
			return nil, fmt.Errorf("%w: line %d: want name:hash", ErrBadUsersFile, n)
		case !validName(name):
			return nil, fmt.Errorf("%w: line %d: invalid user name", ErrBadUsersFile, n)
		case !isBcrypt(hash):
			return nil, fmt.Errorf("%w: line %d: user %q: not a bcrypt hash", ErrBadUsersFile, n, name)
		}
		if _, dup := u.hashes[name]; dup {
			return nil, fmt.Errorf("%w: line %d: user %q listed twice", ErrBadUsersFile, n, name)
		}
		u.hashes[name] = hash
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadUsersFile, err)
	}
	return u, nil
}

// LoadUsers reads a users file. Warning: the file holds password hashes;
// keep it readable by the daemon only.
func LoadUsers(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	defer f.Close()
	u, err := ParseUsers(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return u, nil
}

// NewUsers builds a Users from name → bcrypt hash, with the checks of
// ParseUsers.
func NewUsers(hashes map[string]string) (*Users, error) {
	u := &Users{hashes: make(map[string]string, len(hashes))}
	for name, hash := range hashes {
		if !validName(name) || !isBcrypt(hash) {
			return nil, fmt.Errorf("%w: user %q: invalid name or not a bcrypt hash", ErrBadUsersFile, name)
		}
		u.hashes[name] = hash
	}
	return u, nil
}

// Len returns the number of users.
func (u *Users) Len() int { return len(u.hashes) }

// Names returns the user names, sorted.
func (u *Users) Names() []string {
	names := make([]string, 0, len(u.hashes))
	for n := range u.hashes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (u *Users) hash(name string) (string, bool) {
	if u == nil {
		return "", false
	}
	h, ok := u.hashes[name]
	return h, ok
}

// HashPassword returns the bcrypt hash of password at bcrypt.DefaultCost.
func HashPassword(password string) (string, error) {
	return HashPasswordCost(password, bcrypt.DefaultCost)
}

// HashPasswordCost returns the bcrypt hash of password at the given cost.
// bcrypt only looks at the first 72 bytes; longer passwords are refused
// rather than silently truncated.
func HashPasswordCost(password string, cost int) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("auth: hash password: %w", err)
	}
	return string(h), nil
}

// FormatUser returns one users-file line, "name:hash\n".
func FormatUser(name, hash string) (string, error) {
	if !validName(name) || !isBcrypt(hash) {
		return "", fmt.Errorf("%w: user %q: invalid name or not a bcrypt hash", ErrBadUsersFile, name)
	}
	return name + ":" + hash + "\n", nil
}

// validName refuses names that would break the file format or logs.
func validName(name string) bool {
	if name == "" || len(name) > 256 || name[0] == '#' {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c == ':' || c == 0x7f {
			return false
		}
	}
	return true
}

func isBcrypt(hash string) bool {
	if !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") && !strings.HasPrefix(hash, "$2y$") {
		return false
	}
	_, err := bcrypt.Cost([]byte(hash))
	return err == nil
}
