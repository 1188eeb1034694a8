package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// ErrBadCredentials is what an Authenticator returns for a wrong password
// or an unknown user; any other error is treated as temporary.
var ErrBadCredentials = errors.New("gateway: bad credentials")

// Authenticator verifies a user at the gateway (proxy mode). Passthrough
// mode needs none: the backend verifies the user's own credentials.
type Authenticator interface {
	Authenticate(ctx context.Context, authcid, password string) error
}

// Credentials are what a client presented at login.
type Credentials struct {
	AuthzID  string // requested authorization identity, "" for none
	AuthcID  string
	Password string
}

// Identity is the user whose mailbox the session opens: the authorization
// id when one was requested, else the authentication id.
func (c Credentials) Identity() string {
	if c.AuthzID != "" {
		return c.AuthzID
	}
	return c.AuthcID
}

// decodePlain parses a base64 SASL PLAIN response (RFC 4616):
// authzid NUL authcid NUL passwd.
func decodePlain(b64 string) (Credentials, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return Credentials{}, fmt.Errorf("invalid base64: %w", err)
	}
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return Credentials{}, errors.New("malformed PLAIN response")
	}
	return Credentials{AuthzID: string(parts[0]), AuthcID: string(parts[1]), Password: string(parts[2])}, nil
}

// encodePlain builds a base64 SASL PLAIN response.
func encodePlain(authzid, authcid, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(authzid + "\x00" + authcid + "\x00" + password))
}

// FileAuthenticator checks passwords against bcrypt hashes loaded from a
// file with one "user:hash" (or "user<TAB>hash") per line; '#' starts a
// comment. It is read once: restart the gateway to change it.
type FileAuthenticator struct {
	hashes map[string][]byte
	dummy  []byte // compared for unknown users so they cost the same
}

// LoadFileAuthenticator reads a password file.
func LoadFileAuthenticator(path string) (*FileAuthenticator, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gateway: users file: %w", err)
	}
	defer f.Close()
	a := &FileAuthenticator{hashes: map[string][]byte{}}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.IndexAny(line, ":\t")
		if i <= 0 {
			return nil, fmt.Errorf("gateway: users file %s line %d: want user:bcrypt-hash", path, n)
		}
		user, hash := line[:i], strings.TrimSpace(line[i+1:])
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("gateway: users file %s line %d: %w", path, n, err)
		}
		a.hashes[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("gateway: users file %s: %w", path, err)
	}
	a.dummy, _ = bcrypt.GenerateFromPassword([]byte("unknown user"), bcrypt.DefaultCost)
	return a, nil
}

// Authenticate implements Authenticator.
func (a *FileAuthenticator) Authenticate(_ context.Context, authcid, password string) error {
	hash, ok := a.hashes[authcid]
	if !ok {
		_ = bcrypt.CompareHashAndPassword(a.dummy, []byte(password))
		return ErrBadCredentials
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return ErrBadCredentials
	}
	return nil
}
