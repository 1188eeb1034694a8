// Package gateway is Rookery's front door for mail clients and MTAs. It
// replaces Cyrus proxyd (IMAP), the POP3 proxy and lmtpproxyd: it reads a
// client's login or an LMTP recipient, looks the user's INBOX up in a
// local in-memory replica of the directory (Router, usually a *Replica fed
// by the gRPC Watch stream), connects to the backend that holds it, and
// then relays bytes (IMAP, POP3) or per-recipient replies (LMTP).
//
// Routing never leaves the process, so the directory being slow or
// unreachable never delays a login; it only makes unknown names answer
// with temporary errors until the replica is Ready again.
//
// The files are grouped by protocol; each group's first file says how it
// works:
//
//   - IMAP: imap.go (pre-login session; commands are read by
//     internal/imapwire in its IMAP syntax), imap_backend*.go (backend
//     login), and for imap.mode "murder"
//     imap_session.go with imap_mailbox.go, imap_message.go, imap_ext.go,
//     imap_namespace.go, imap_acl.go, imap_handoff.go, imap_intercept.go.
//   - POP3: pop3.go.
//   - LMTP: lmtp.go (session and listener), lmtp_backend.go (backends),
//     lmtp_bare.go (bare local parts in front of go-smtp).
//   - Shared session plumbing, in files without a protocol prefix:
//     server.go (listeners, connection tracking, shutdown), limits.go,
//     login.go and auth.go (login attempts, backend dialling, users),
//     relay.go, replica.go, names.go and static.go (routing), metrics.go,
//     config.go.
package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Server runs the gateway's listeners.
type Server struct {
	cfg     Config
	router  Router
	auth    Authenticator
	log     *slog.Logger
	names   Namer
	mbNames mailboxNamer
	handoff *imapHandoff // murder-mode IMAP sessions after login (nil in relay mode)
	tlsConf *tls.Config  // listeners (nil: no TLS)
	beTLS   *tls.Config  // backends (nil: plain)
	now     func() time.Time

	m      metrics
	logins *loginLimiter
	conns  *connLimiter

	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	lmtp      map[*smtp.Server]struct{}
	active    map[net.Conn]bool // true once the session is relaying
	wg        sync.WaitGroup
}

// New validates cfg and builds a server that routes with router.
func New(cfg Config, router Router) (*Server, error) {
	if router == nil {
		return nil, errors.New("gateway: nil router")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		router:    router,
		auth:      cfg.Authenticator,
		log:       cfg.Logger,
		now:       time.Now,
		listeners: map[net.Listener]struct{}{},
		lmtp:      map[*smtp.Server]struct{}{},
		active:    map[net.Conn]bool{},
		names: Namer{
			VirtualDomains: cfg.Names.VirtualDomains,
			DefaultDomain:  cfg.Names.DefaultDomain,
			Lowercase:      cfg.Names.Lowercase,
		},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "gateway")
	s.mbNames = newMailboxNamer(cfg.Names)
	if cfg.IMAP.Mode == IMAPModeMurder {
		if _, ok := router.(Directory); !ok {
			return nil, fmt.Errorf("gateway: imap.mode %q needs a router that can list the directory (a *Replica), got %T", IMAPModeMurder, router)
		}
	}
	var err error
	if s.tlsConf, err = cfg.serverTLS(); err != nil {
		return nil, err
	}
	if s.beTLS, err = cfg.backendTLS(); err != nil {
		return nil, err
	}
	if cfg.Backend.Auth == AuthProxy && s.auth == nil {
		if s.auth, err = LoadFileAuthenticator(cfg.Users.File); err != nil {
			return nil, err
		}
	}
	lim := cfg.Limits
	s.logins = newLoginLimiter(lim.LoginFailures, lim.LoginWindow.Std(), lim.MaxTrackedIPs, s.now)
	s.conns = newConnLimiter(lim.MaxConnections, lim.MaxConnectionsPerIP)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if cfg.IMAP.Mode == IMAPModeMurder {
		s.handoff = newIMAPHandoff(s.log.With("proto", "imap"))
	}
	return s, nil
}

// Metrics returns a snapshot of the counters, with the replica's lag when
// the router reports it.
func (s *Server) Metrics() Metrics {
	m := s.m.snapshot()
	if rs, ok := s.router.(interface{ Stats() ReplicaStats }); ok {
		st := rs.Stats()
		m.Replica = &st
	}
	return m
}

// ListenAndServe opens every configured listener and serves until ctx is
// done or Close is called. It returns the first listener error.
func (s *Server) ListenAndServe(ctx context.Context) error {
	type lc struct {
		addr  string
		proto Protocol
	}
	var want []lc
	l := s.cfg.Listen
	for _, c := range []lc{{l.IMAP, ProtoIMAP}, {l.IMAPS, ProtoIMAPS}, {l.POP3, ProtoPOP3}, {l.POP3S, ProtoPOP3S}, {l.LMTP, ProtoLMTP}} {
		if c.addr != "" {
			want = append(want, c)
		}
	}
	if len(want) == 0 {
		return errors.New("gateway: no listener configured")
	}
	errc := make(chan error, len(want))
	var lns []net.Listener
	for _, c := range want {
		ln, err := net.Listen("tcp", c.addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("gateway: listen %s %s: %w", c.proto, c.addr, err)
		}
		lns = append(lns, ln)
		s.log.Info("listening", "proto", c.proto, "addr", ln.Addr().String())
		go func(p Protocol) { errc <- s.Serve(ctx, p, ln) }(c.proto)
	}
	var first error
	for range want {
		if err := <-errc; err != nil && first == nil {
			first = err
			s.Close()
		}
	}
	return first
}

// Serve accepts connections for one protocol on ln until ctx is done or
// Close is called; it then returns nil.
func (s *Server) Serve(ctx context.Context, p Protocol, ln net.Listener) error {
	if !s.track(ln) {
		ln.Close()
		return errors.New("gateway: server closed")
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	if p == ProtoLMTP {
		return s.serveLMTP(ln)
	}
	if (p == ProtoIMAPS || p == ProtoPOP3S) && s.tlsConf == nil {
		return fmt.Errorf("gateway: %s needs a TLS certificate", p)
	}
	var handle func(context.Context, net.Conn, bool)
	var reject string
	switch p {
	case ProtoIMAP, ProtoIMAPS:
		handle, reject = s.serveIMAP, "* BYE Too many connections\r\n"
	case ProtoPOP3, ProtoPOP3S:
		handle, reject = s.servePOP3, "-ERR [SYS/TEMP] Too many connections\r\n"
	default:
		return fmt.Errorf("gateway: unknown protocol %q", p)
	}
	implicit := p == ProtoIMAPS || p == ProtoPOP3S
	return s.acceptLoop(ln, reject, func(c net.Conn) { handle(s.ctx, c, implicit) })
}

// acceptLoop accepts until the listener closes, applying connection
// limits; rejected connections get the protocol's refusal line (written
// without TLS for implicit-TLS listeners, where it is just noise the
// client ignores).
func (s *Server) acceptLoop(ln net.Listener, reject string, handle func(net.Conn)) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("gateway: accept: %w", err)
		}
		backoff = 0
		ip := remoteIP(c.RemoteAddr())
		if !s.conns.Acquire(ip) {
			s.m.rejectedConns.Add(1)
			c.SetWriteDeadline(time.Now().Add(time.Second))
			c.Write([]byte(reject))
			c.Close()
			continue
		}
		if !s.trackConn(c) {
			s.conns.Release(ip)
			c.Close()
			return nil
		}
		s.m.active.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.m.active.Add(-1)
			defer s.conns.Release(ip)
			defer s.untrackConn(c)
			defer c.Close()
			handle(c)
		}()
	}
}

func (s *Server) track(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.listeners[ln] = struct{}{}
	return true
}

func (s *Server) trackConn(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.active[c] = false
	s.wg.Add(1)
	return true
}

// setRelaying marks a connection as logged in: Shutdown lets those
// finish, while it closes connections still before login at once.
func (s *Server) setRelaying(c net.Conn) {
	s.mu.Lock()
	if _, ok := s.active[c]; ok {
		s.active[c] = true
	}
	s.mu.Unlock()
}

func (s *Server) untrackConn(c net.Conn) {
	s.mu.Lock()
	delete(s.active, c)
	s.mu.Unlock()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops every listener and closes every connection, including
// relayed sessions, and waits for their goroutines to finish.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.active {
		c.Close()
	}
	lmtp := s.lmtp
	s.mu.Unlock()
	for srv := range lmtp {
		srv.Close()
	}
	if s.handoff != nil {
		s.handoff.close()
	}
	s.wg.Wait()
	return nil
}

// Shutdown stops accepting, closes connections that have not logged in,
// lets relayed sessions and LMTP transactions finish until ctx is done,
// then closes whatever is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	for ln := range s.listeners {
		ln.Close()
	}
	for c, relaying := range s.active {
		if !relaying {
			c.Close()
		}
	}
	lmtp := s.lmtp
	s.mu.Unlock()
	for srv := range lmtp {
		srv.Shutdown(ctx)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return s.Close()
}

func writef(w *bufio.Writer, format string, args ...any) {
	fmt.Fprintf(w, format, args...)
}

// serverHandshake runs the TLS server handshake within the pre-login
// timeout.
func (s *Server) serverHandshake(ctx context.Context, conn net.Conn) (*tls.Conn, error) {
	tc := tls.Server(conn, s.tlsConf)
	hctx, cancel := context.WithTimeout(ctx, s.cfg.Limits.PreLoginTimeout.Std())
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		s.m.tlsFailures.Add(1)
		s.log.Debug("TLS handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
		return nil, err
	}
	return tc, nil
}

// pending returns the bytes already buffered in br (read from the peer
// but not yet consumed), which the relay must forward first.
func pending(br *bufio.Reader) []byte {
	n := br.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := br.Peek(n)
	return append([]byte(nil), b...)
}
