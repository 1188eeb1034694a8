package mupdatecompat

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/rookery/rookery/auth"
	wire "github.com/rookery/rookery/internal/imapwire"
)

// Reply texts of AUTHENTICATE. "Authenticated" and "Client canceled
// authentication" are Cyrus's; the failure texts are Cyrus SASL's
// sasl_errstring texts, so backend logs look familiar.
const (
	textAuthenticated   = "Authenticated"
	textAlreadyAuthed   = "already authenticated"
	textCanceled        = "Client canceled authentication"
	textNoMech          = "no mechanism available"
	textEncryptionFirst = "encryption needed to use mechanism"
	textBadBase64       = "bad protocol / cancel"
	textAuthFailure     = "authentication failure"
	textNotAllowed      = "only admins may authenticate"
	textAuthzFailure    = "authorization failure"
	textAuthTemporary   = "temporary failure"
)

// authenticate runs AUTHENTICATE mech [initial-response]
// (docs/mupdate.md §4): the mechanism may be quoted, a literal or an atom;
// the initial response a string, or the atom "=" for an empty one;
// continuation lines are bare base64 both ways, and "*" cancels.
func (c *conn) authenticate(cmd *wire.Command) bool {
	tag := cmd.Tag
	if c.authed {
		c.reply(tag, "BAD", textAlreadyAuthed)
		return true
	}
	mech := strings.ToUpper(cmd.Args[0].Value)
	if !c.offers(mech) {
		c.reply(tag, "NO", textNoMech)
		return true
	}
	if c.cfg.RequireTLSForAuth && !c.tls {
		c.srv.refused.tlsRequired.Add(1)
		c.log.Warn("mupdate login refused: encryption required", "mech", mech)
		c.reply(tag, "NO", textEncryptionFirst)
		return true
	}
	var resp []byte // nil: no initial response
	if len(cmd.Args) == 2 {
		var ok bool
		if resp, ok = decodeSASL(cmd.Args[1].Value); !ok {
			c.reply(tag, "NO", textBadBase64)
			return true
		}
	}

	var (
		id      auth.Identity
		authErr error
		user    string
	)
	check := func(authzid, username, password string) error {
		user = username
		ctx, cancel := context.WithTimeout(auth.WithSource(c.ctx, c.source), c.cfg.CommandTimeout)
		defer cancel()
		c.checking.Store(true)
		defer c.checking.Store(false)
		id, authErr = c.srv.auth.Authenticate(ctx, authzid, username, password)
		return authErr
	}
	var srv sasl.Server
	switch mech {
	case sasl.Plain:
		srv = sasl.NewPlainServer(check)
	case sasl.Login:
		srv = newLoginServer(func(u, p string) error { return check("", u, p) })
	}

	for {
		challenge, done, err := srv.Next(resp)
		if err != nil {
			return c.authFailed(tag, mech, user, authErr)
		}
		if done {
			break
		}
		c.w.WriteLine(base64.StdEncoding.EncodeToString(challenge))
		if c.flush() != nil {
			return false
		}
		c.nc.SetReadDeadline(c.readDeadline())
		line, err := c.r.ReadLine()
		if err != nil {
			return c.readFailed(err)
		}
		if len(line) > 0 && line[0] == '*' {
			c.reply(tag, "NO", textCanceled)
			return true
		}
		var ok bool
		if resp, ok = decodeSASL(string(line)); !ok {
			c.reply(tag, "NO", textBadBase64)
			return true
		}
	}

	if !c.srv.loggedIn(c) {
		c.closedBeforeLogin() // replaced while the password was checked
		return false
	}
	c.authed = true
	c.id = id
	c.profile = c.cfg.profile(id.Name)
	c.w.SetQuoteStrings(c.profile.QuoteStrings)
	c.r.SetLimits(c.cfg.Limits)
	c.log.Info("mupdate login", "identity", id.Name, "mech", mech, "role", id.Role.String(), "tls", c.tls)
	c.reply(tag, "OK", textAuthenticated)
	return true
}

// authFailed answers a failed login after FailedAuthDelay. Only the user
// name is logged, never the password or the SASL data.
func (c *conn) authFailed(tag, mech, user string, authErr error) bool {
	text := textAuthFailure
	switch {
	case authErr == nil: // malformed SASL exchange
	case errors.Is(authErr, auth.ErrNoRole):
		text = textNotAllowed
	case errors.Is(authErr, auth.ErrProxyDenied):
		text = textAuthzFailure
	case errors.Is(authErr, auth.ErrThrottled), errors.Is(authErr, auth.ErrBusy):
		c.srv.refused.authThrottled.Add(1)
		text = textAuthTemporary
	case !errors.Is(authErr, auth.ErrBadCredentials):
		text = textAuthTemporary
	}
	c.srv.refused.authFailed.Add(1)
	c.log.Warn("mupdate login failed", "mech", mech, "user", user, "reason", text, "err", authErr)
	if c.cfg.FailedAuthDelay > 0 {
		t := time.NewTimer(c.cfg.FailedAuthDelay)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
		}
	}
	c.reply(tag, "NO", text)
	return true
}

func (c *conn) offers(mech string) bool {
	for _, m := range c.cfg.Mechanisms {
		if strings.EqualFold(m, mech) {
			return true
		}
	}
	return false
}

// decodeSASL decodes a base64 SASL blob; "=" is the empty response.
func decodeSASL(s string) ([]byte, bool) {
	if s == "=" {
		return []byte{}, true
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, false
	}
	if b == nil {
		b = []byte{}
	}
	return b, true
}

// loginServer is the server side of the LOGIN mechanism (go-sasl has only
// the client): challenges "Username:" and "Password:", with the user name
// accepted as initial response, as Cyrus SASL does.
type loginServer struct {
	step     int
	username string
	check    func(username, password string) error
}

func newLoginServer(check func(username, password string) error) *loginServer {
	return &loginServer{check: check}
}

var errLoginSequence = errors.New("sasl LOGIN: unexpected response")

func (s *loginServer) Next(resp []byte) (challenge []byte, done bool, err error) {
	switch s.step {
	case 0:
		s.step = 1
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		s.username = string(resp)
		s.step = 2
		return []byte("Password:"), false, nil
	case 2:
		s.step = 3
		return nil, true, s.check(s.username, string(resp))
	}
	return nil, false, errLoginSequence
}
