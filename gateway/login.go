package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/rookery/rookery/fsm"
)

// Protocol names a service the gateway fronts.
type Protocol string

const (
	ProtoIMAP  Protocol = "imap"
	ProtoIMAPS Protocol = "imaps"
	ProtoPOP3  Protocol = "pop3"
	ProtoPOP3S Protocol = "pop3s"
	ProtoLMTP  Protocol = "lmtp"
)

// failKind classifies a failed login so each protocol can word it.
type failKind uint8

const (
	// failAuth: wrong password or unknown user (indistinguishable).
	failAuth failKind = iota + 1
	// failAuthz: the authentication id may not act as the requested user.
	failAuthz
	// failTemp: try again later (backend down, mailbox RESERVED,
	// directory not ready).
	failTemp
	// failRateLimited: too many failures from this address.
	failRateLimited
)

// loginError is a failed login; text is safe to show to the client.
type loginError struct {
	kind failKind
	text string
}

// backendCreds is what the gateway presents to the backend.
type backendCreds struct {
	authzid, authcid, password string
}

// refusal is a backend's negative answer to a login, as opposed to a
// transport or protocol failure.
type refusal struct {
	temporary bool   // the backend said "try later" ([UNAVAILABLE], [SYS/TEMP], [IN-USE])
	text      string // the backend's text, for logs
	code      string // response code, e.g. "AUTHENTICATIONFAILED" or "IN-USE"
}

func (r *refusal) Error() string { return "backend refused login: " + r.text }

// route is where a login goes.
type route struct {
	user   User
	server string
	addr   string
	creds  backendCreds
}

// attempt carries one login through resolution and backend login, and
// makes every failure cost at least AuthFailureDelay.
type attempt struct {
	s     *Server
	proto Protocol
	ip    string
	start time.Time
	creds Credentials
}

func (s *Server) newAttempt(proto Protocol, ip string, creds Credentials) *attempt {
	return &attempt{s: s, proto: proto, ip: ip, start: s.now(), creds: creds}
}

// resolve checks the rate limit, verifies the user at the gateway in proxy
// mode, and finds the backend that holds the user's INBOX.
func (a *attempt) resolve(ctx context.Context) (route, *loginError) {
	s := a.s
	if s.logins.Blocked(a.ip) {
		s.m.loginsRateLimited.Add(1)
		return route{}, &loginError{kind: failRateLimited, text: "Too many failed logins, try again later"}
	}
	if strings.ContainsRune(a.creds.AuthcID+a.creds.AuthzID+a.creds.Password, 0) {
		return route{}, a.fail(ctx, failAuth, "NUL in credentials")
	}
	user, err := s.names.ParseLogin(a.creds.Identity())
	if err != nil {
		return route{}, a.fail(ctx, failAuth, "invalid user name")
	}
	if s.cfg.Backend.Auth == AuthProxy {
		if a.creds.AuthzID != "" && a.creds.AuthzID != a.creds.AuthcID {
			return route{}, a.fail(ctx, failAuthz, "authorization id differs from authentication id")
		}
		switch err := s.auth.Authenticate(ctx, a.creds.AuthcID, a.creds.Password); {
		case errors.Is(err, ErrBadCredentials):
			return route{}, a.fail(ctx, failAuth, "bad credentials at gateway")
		case err != nil:
			s.log.Warn("authenticator failed", "proto", a.proto, "err", err)
			return route{}, a.temp("Authentication service unavailable")
		}
	}
	entry, ok := s.router.Lookup(user.Inbox())
	if !ok {
		if !s.router.Ready() {
			s.m.routingNotReady.Add(1)
			return route{}, a.temp("Directory not ready, try again later")
		}
		s.m.routingMisses.Add(1)
		return route{}, a.fail(ctx, failAuth, "no INBOX "+user.Inbox())
	}
	if entry.State != fsm.StateActive {
		s.m.routingReserved.Add(1)
		return route{}, a.temp("Mailbox is being created or moved, try again later")
	}
	server := entry.Server()
	addr := s.serviceAddr(server, a.proto)
	if addr == "" {
		s.m.backendErrors.Add(1)
		s.log.Error("no address for backend", "server", server, "proto", a.proto, "mailbox", entry.Name)
		return route{}, a.temp("Backend unavailable, try again later")
	}
	s.m.routed.Add(1)
	r := route{user: user, server: server, addr: addr}
	if s.cfg.Backend.Auth == AuthProxy {
		r.creds = backendCreds{authzid: user.Login(), authcid: s.cfg.Backend.AuthName, password: s.cfg.Backend.Password}
	} else {
		r.creds = backendCreds{authzid: a.creds.AuthzID, authcid: a.creds.AuthcID, password: a.creds.Password}
	}
	return r, nil
}

// backendFailed classifies an error from a backend login.
func (a *attempt) backendFailed(ctx context.Context, r route, err error) *loginError {
	var ref *refusal
	if errors.As(err, &ref) {
		if ref.temporary {
			a.s.log.Info("backend refused login temporarily", "proto", a.proto, "server", r.server, "text", ref.text)
			return a.temp("Backend unavailable, try again later")
		}
		if a.s.cfg.Backend.Auth == AuthProxy {
			// The user was verified here; the backend refusing the proxy
			// identity is a configuration problem, not the user's fault.
			a.s.m.backendErrors.Add(1)
			a.s.log.Error("backend refused the proxy identity", "proto", a.proto, "server", r.server, "text", ref.text)
			return a.temp("Backend unavailable, try again later")
		}
		return a.fail(ctx, failAuth, "backend: "+ref.text)
	}
	a.s.m.backendErrors.Add(1)
	a.s.log.Warn("backend login failed", "proto", a.proto, "server", r.server, "addr", r.addr, "err", err)
	return a.temp("Backend unavailable, try again later")
}

func (a *attempt) succeeded(r route) {
	a.s.m.loginsOK.Add(1)
	a.s.log.Info("login", "proto", a.proto, "user", r.user.Login(), "ip", a.ip, "server", r.server, "backend", r.addr)
}

func (a *attempt) temp(text string) *loginError {
	a.s.m.loginsTempFailed.Add(1)
	return &loginError{kind: failTemp, text: text}
}

// fail records a credential failure and waits out the failure delay
// measured from the start of the attempt, so unknown users, bad gateway
// passwords and bad backend passwords all take about as long.
func (a *attempt) fail(ctx context.Context, kind failKind, why string) *loginError {
	s := a.s
	s.m.loginsFailed.Add(1)
	s.logins.Fail(a.ip)
	// The name as the client sent it (never the password), so an operator
	// can tell a user's typo from a password-guessing run.
	s.log.Info("login failed", "proto", a.proto, "user", a.creds.Identity(), "ip", a.ip, "reason", why)
	if d := s.cfg.Limits.AuthFailureDelay.Std() - s.now().Sub(a.start); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	if kind == failAuthz {
		return &loginError{kind: kind, text: "Authorization failed"}
	}
	return &loginError{kind: kind, text: "Authentication failed"}
}

// serviceAddr returns a backend's address for a protocol.
func (s *Server) serviceAddr(server string, p Protocol) string {
	addrs, ok := s.cfg.Servers[server]
	if !ok {
		return ""
	}
	switch p {
	case ProtoIMAP, ProtoIMAPS:
		return addrs.IMAP
	case ProtoPOP3, ProtoPOP3S:
		return addrs.POP3
	case ProtoLMTP:
		return addrs.LMTP
	}
	return ""
}

// dialBackend connects to a backend, with implicit TLS when configured.
func (s *Server) dialBackend(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: s.cfg.Backend.DialTimeout.Std(), KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if s.cfg.Backend.TLS != BackendTLSImplicit {
		return c, nil
	}
	tc, err := s.clientTLS(ctx, c, addr)
	if err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// clientTLS runs a TLS client handshake to a backend on c.
func (s *Server) clientTLS(ctx context.Context, c net.Conn, addr string) (net.Conn, error) {
	cfg := s.beTLS.Clone()
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg.ServerName = host
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS to backend %s: %w", addr, err)
	}
	return tc, nil
}

// loginBackend dials a backend and runs login (greeting, STARTTLS,
// authentication) on the new connection within backend.login_timeout. A
// login that fails or overruns the deadline closes the connection, so no
// half-logged-in backend session leaks.
func (s *Server) loginBackend(ctx context.Context, addr string, login func(ctx context.Context, conn net.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Backend.LoginTimeout.Std())
	defer cancel()
	conn, err := s.dialBackend(ctx, addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	err = login(ctx, conn)
	if !stop() || err != nil {
		conn.Close()
		if err == nil || ctx.Err() != nil {
			err = fmt.Errorf("backend %s: login timed out: %w", addr, context.Cause(ctx))
		}
		return err
	}
	return nil
}

// responseCode returns the atom of a leading "[CODE ...]", upper case.
func responseCode(text string) string {
	if !strings.HasPrefix(text, "[") {
		return ""
	}
	end := strings.IndexAny(text, " ]")
	if end < 0 {
		return ""
	}
	return strings.ToUpper(text[1:end])
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
