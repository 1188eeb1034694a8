// Package mupdatecompat is a MUPDATE (RFC 3656) server that real Cyrus IMAP
// 2.4–3.x backends, frontend mupdate slaves and tools use unchanged, in
// front of rookery's replicated directory.
//
// It speaks what Cyrus actually sends and expects (docs/mupdate.md): the
// banner, SASL PLAIN and LOGIN with bare base64 continuation lines, {N+}
// literals in both directions, tagged MAILBOX/RESERVE data for FIND, LIST
// and UPDATE in mailboxes.db order, an UPDATE stream fed from the
// directory's change history as soon as changes are applied, and NOOP on a
// stream as a read-your-writes barrier.
//
// The syntax lives in package wire; this package holds the session state
// machine, and talks to the directory through the Directory interface.
//
// # Where it differs from the Cyrus master, and why
//
// Accepted beyond Cyrus: atoms wherever a string is expected (Cyrus answers
// BAD "Extra arguments"), including the "=" empty initial response Cyrus's
// own client sends.
//
// Answered where Cyrus crashes or has no answer: DELETE of a missing name
// gets NO "mailbox doesn't exist"; a write by a read-only identity NO
// "permission denied"; a login without a role NO "only admins may
// authenticate"; a directory without quorum NO "directory temporarily
// unavailable, try again" within CommandTimeout. Protocol errors Cyrus
// cannot meet (limits) get BAD "Line too long", "Literal too large",
// "Command too long", "Too many arguments", "Invalid tag", "Invalid quoted
// string", "Invalid literal", "NUL byte in literal" or "Invalid characters
// in command"; the first three close the connection.
//
// Streams: every change is sent as soon as it is applied, as the state it
// produced (RESERVE then MAILBOX for a create), where Cyrus sends the
// current state of each changed name every 5 s or at NOOP. A stream that
// falls behind the kept history gets `* BYE "stream history compacted,
// resynchronize"`, and one whose NOOP barrier cannot be proven within
// BarrierTimeout `* BYE "directory unavailable, reconnect"`; the Cyrus slave
// reconnects and resynchronises in both cases. Idle connections get
// `* BYE "idle timeout"`, all connections `* BYE "Server shutting down"` at
// Shutdown.
//
// Texts Cyrus sends unquoted (STARTTLS and COMPRESS replies, "Client
// canceled authentication") are quoted, which every Cyrus client accepts.
// COMPRESS is refused before login (its state costs about 1 MiB). `* BYE
// "Server Unable"` is sent without the stray NUL byte Cyrus appends.
// Every node is writable, so "read-only session" is never sent, and the
// banner always says "(master)".
package mupdatecompat

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rookery/rookery/auth"
	"github.com/rookery/rookery/directory"
	wire "github.com/rookery/rookery/internal/imapwire"
)

// Authenticator checks a SASL login. *auth.Authenticator implements it.
// Errors wrapping auth.ErrBadCredentials, auth.ErrNoRole and
// auth.ErrProxyDenied are refusals; any other error is temporary.
type Authenticator interface {
	Authenticate(ctx context.Context, authzid, username, password string) (auth.Identity, error)
}

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown.
var ErrServerClosed = errors.New("mupdatecompat: server closed")

// Server serves MUPDATE connections. One Server may serve several
// listeners, plain and implicit-TLS.
type Server struct {
	cfg  Config
	dir  *directory.Service
	auth Authenticator
	log  *slog.Logger

	closing atomic.Bool
	nconns  atomic.Int64
	pre     preauthSet
	refused refusals
	// streams and fullDumps feed metrics (metrics.go).
	streams   atomic.Int64
	fullDumps atomic.Uint64

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	wg        sync.WaitGroup
}

// NewServer returns a server. It fails on a configuration that would break
// the wire format (see Config).
func NewServer(cfg Config, dir *directory.Service, a Authenticator, logger *slog.Logger) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if dir == nil || a == nil {
		return nil, errors.New("mupdatecompat: a directory service and an Authenticator are required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		cfg:       cfg,
		dir:       dir,
		auth:      a,
		log:       logger,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
	}, nil
}

// Serve accepts plain connections on ln (STARTTLS is offered when
// Config.TLSConfig is set) until Shutdown. It always returns an error,
// ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, false) }

// ServeTLS accepts implicit-TLS connections on ln: TLS first, then the
// banner (Cyrus `mupdate_server: host:port/tls`).
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.cfg.TLSConfig == nil {
		return errors.New("mupdatecompat: ServeTLS needs Config.TLSConfig")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	if !s.track(ln) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.untrack(ln)
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("mupdate accept failed; retrying", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("mupdatecompat: accept: %w", err)
		}
		backoff = 0
		s.accept(nc, implicitTLS)
	}
}

// serverUnableText is what Cyrus sends beyond mupdate_connections_max.
const serverUnableText = "Server Unable"

func (s *Server) accept(nc net.Conn, implicitTLS bool) {
	s.nconns.Add(1)
	c := newConn(s, nc, implicitTLS)
	if bye := s.admit(c); bye != "" {
		s.nconns.Add(-1)
		s.log.Warn("mupdate connection refused: connection limit reached", "remote", nc.RemoteAddr().String(),
			"reason", bye, "limit", s.cfg.MaxConnections, "per_source_limit", s.cfg.MaxPreAuthPerSource)
		go func() {
			nc.SetWriteDeadline(time.Now().Add(time.Second))
			nc.Write([]byte("* BYE " + wire.Quote(bye) + "\r\n"))
			nc.Close()
		}()
		return
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		s.forget(c)
		s.nconns.Add(-1)
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.nconns.Add(-1)
		defer s.forget(c)
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
		c.serve()
	}()
}

func (s *Server) track(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.listeners[ln] = struct{}{}
	return true
}

func (s *Server) untrack(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
}

// Connections returns the number of open connections.
func (s *Server) Connections() int { return int(s.nconns.Load()) }

// Shutdown stops accepting, lets every command in progress finish, says
// `* BYE` to idle clients and streams, and waits for the connections to
// close. When ctx ends first, the remaining connections are closed hard and
// ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.interrupt()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.kill()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// tlsConfig is the TLS configuration, never nil when TLS is in use.
func (s *Server) tlsConfig() *tls.Config { return s.cfg.TLSConfig }
