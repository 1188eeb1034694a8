package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rookery/rookery/fsm"
)

// LMTP semantics: each RCPT is forwarded to its backend at RCPT time and
// the client gets the backend's own answer, so no recipient is ever
// acknowledged before the backend holding it has accepted it. DATA is
// streamed once to every backend that accepted at least one recipient
// (a fan-out writer, no spooling), and each recipient's reply after DATA
// is the one its backend gave for it. A backend that cannot be reached,
// or fails mid-transaction, gets 451 for its recipients only.

var (
	errRcptUnknown     = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
	errRcptBadAddress  = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Invalid recipient address"}
	errRcptNotReady    = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Directory not ready, try again later"}
	errRcptReserved    = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "Mailbox is being created or moved, try again later"}
	errRcptUnavailable = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: "Backend unavailable, try again later"}
)

// newLMTPServer builds the go-smtp server for one LMTP listener.
func (s *Server) newLMTPServer(ctx context.Context) *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &lmtpSession{s: s, ctx: ctx, backends: map[string]*lmtpBackend{}}, nil
	}))
	srv.LMTP = true
	srv.Domain = s.cfg.Hostname
	srv.MaxMessageBytes = s.cfg.LMTP.MaxMessageBytes
	srv.MaxRecipients = s.cfg.LMTP.MaxRecipients
	srv.MaxLineLength = s.cfg.LMTP.MaxLineLength
	srv.ReadTimeout = s.cfg.LMTP.Timeout.Std()
	srv.WriteTimeout = s.cfg.LMTP.Timeout.Std()
	// No TLSConfig: go-smtp's STARTTLS would wrap the connection below
	// the bare-address filter, which therefore does STARTTLS itself
	// (lmtp_bare.go).
	srv.ErrorLog = slogPrinter{s.log.With("proto", "lmtp")}
	return srv
}

// lmtpSession is one LMTP client connection (a go-smtp Session).
type lmtpSession struct {
	s        *Server
	ctx      context.Context
	from     string
	mailOpts *smtp.MailOptions
	backends map[string]*lmtpBackend // by Cyrus servername, kept across transactions
}

// lmtpBackend is the session's connection to one backend.
type lmtpBackend struct {
	server string
	c      *smtp.Client
	err    error      // set once the connection is unusable
	inTxn  bool       // MAIL FROM sent
	rcpts  []lmtpRcpt // accepted by the backend in this transaction
}

// lmtpRcpt is an accepted recipient in both its spellings: go-smtp's
// (the key of its per-recipient status, with the bare-address sentinel
// when the client sent a bare name) and the backend's (as the client
// sent it, so bare stays bare: Cyrus lmtpd accepts it).
type lmtpRcpt struct {
	client  string
	backend string
}

func (ls *lmtpSession) Mail(from string, opts *smtp.MailOptions) error {
	ls.resetBackends()
	ls.from, ls.mailOpts = stripBare(from), opts
	return nil
}

func (ls *lmtpSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	err := ls.rcpt(to, opts)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code/100 == 5 {
			ls.s.m.lmtpRcptPermFail.Add(1)
		} else {
			ls.s.m.lmtpRcptTempFail.Add(1)
		}
	}
	return err
}

func (ls *lmtpSession) rcpt(to string, opts *smtp.RcptOptions) error {
	s := ls.s
	addr := stripBare(to)
	r, err := s.names.ParseRecipient(addr)
	if err != nil {
		return errRcptBadAddress
	}
	entry, ok := s.router.Lookup(r.Mailbox)
	if !ok {
		if !s.router.Ready() {
			s.m.routingNotReady.Add(1)
			return errRcptNotReady
		}
		s.m.routingMisses.Add(1)
		return errRcptUnknown
	}
	if entry.State != fsm.StateActive {
		s.m.routingReserved.Add(1)
		return errRcptReserved
	}
	s.m.routed.Add(1)
	b, err := ls.backend(entry.Server())
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se // the backend refused MAIL FROM
		}
		return errRcptUnavailable
	}
	if err := b.c.Rcpt(addr, opts); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return backendReply(se) // the backend's answer
		}
		ls.broken(b, err)
		return errRcptUnavailable
	}
	b.rcpts = append(b.rcpts, lmtpRcpt{client: to, backend: addr})
	return nil
}

// backend returns the session's connection to server, dialling and
// starting the transaction (MAIL FROM) on first use.
func (ls *lmtpSession) backend(server string) (*lmtpBackend, error) {
	s := ls.s
	b := ls.backends[server]
	if b == nil {
		b = &lmtpBackend{server: server}
		ls.backends[server] = b
		b.c, b.err = s.dialLMTP(ls.ctx, server)
		if b.err != nil {
			s.m.backendErrors.Add(1)
			s.log.Warn("LMTP backend unavailable", "server", server, "err", b.err)
		}
	}
	if b.err != nil {
		return nil, b.err
	}
	if !b.inTxn {
		if err := b.c.Mail(ls.from, ls.mailOpts); err != nil {
			// A refused MAIL FROM (e.g. size) leaves the connection usable
			// but this transaction impossible on this backend.
			var se *smtp.SMTPError
			if errors.As(err, &se) {
				return nil, backendReply(se)
			}
			ls.broken(b, err)
			return nil, err
		}
		b.inTxn = true
	}
	return b, nil
}

// broken marks a backend connection unusable for the rest of the session.
func (ls *lmtpSession) broken(b *lmtpBackend, err error) {
	if b.err == nil {
		ls.s.m.backendErrors.Add(1)
		ls.s.log.Warn("LMTP backend failed", "server", b.server, "err", err)
		b.err = err
	}
	if b.c != nil {
		b.c.Close()
	}
}

// Data is required by smtp.Session; in LMTP mode go-smtp calls LMTPData.
func (ls *lmtpSession) Data(r io.Reader) error {
	return errors.New("gateway: DATA without LMTP status")
}

// LMTPData streams the message to every backend in the transaction and
// reports each recipient's outcome as its backend gave it.
func (ls *lmtpSession) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	s := ls.s
	var writers []*dataSink
	for _, b := range ls.backends {
		if len(b.rcpts) == 0 {
			continue
		}
		if b.err != nil {
			ls.setAll(status, b, errRcptUnavailable)
			continue
		}
		dc, err := b.c.Data()
		if err != nil {
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				ls.broken(b, err)
				se = errRcptUnavailable
			}
			ls.setAll(status, b, se)
			continue
		}
		writers = append(writers, &dataSink{b: b, w: dc})
	}
	if rerr := fanOut(r, writers); rerr != nil {
		// The client's data is bad (too big, connection lost). There is no
		// way to abort DATA in LMTP other than dropping the connection,
		// which makes every backend discard the message.
		reply := clientDataError(rerr)
		for _, w := range writers {
			ls.broken(w.b, fmt.Errorf("client data: %w", rerr))
			ls.setAll(status, w.b, reply)
		}
		return reply
	}
	var wg sync.WaitGroup
	results := make([]map[string]error, len(writers))
	for i, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = ls.finishData(w)
		}()
	}
	wg.Wait()
	for i, w := range writers {
		for _, rcpt := range w.b.rcpts {
			st := results[i][rcpt.backend]
			status.SetStatus(rcpt.client, st)
			ls.countData(st)
		}
		w.b.inTxn, w.b.rcpts = false, nil
	}
	s.m.lmtpMessages.Add(1)
	return nil
}

// finishData ends one backend's DATA and maps its per-recipient replies,
// keyed by the address the backend was given.
func (ls *lmtpSession) finishData(w *dataSink) map[string]error {
	out := make(map[string]error, len(w.b.rcpts))
	if w.err != nil {
		ls.broken(w.b, w.err)
		for _, r := range w.b.rcpts {
			out[r.backend] = errRcptUnavailable
		}
		return out
	}
	resp, err := w.w.CloseWithLMTPResponse()
	var perRcpt smtp.LMTPDataError
	errors.As(err, &perRcpt)
	transport := err != nil && perRcpt == nil
	for _, rc := range w.b.rcpts {
		r := rc.backend
		switch {
		case perRcpt[r] != nil:
			out[r] = backendReply(perRcpt[r])
		case resp[r] != nil:
			out[r] = successReply(resp[r].StatusText)
		default:
			out[r] = errRcptUnavailable
			transport = true
		}
	}
	if transport {
		ls.broken(w.b, fmt.Errorf("LMTP DATA: %w", err))
	}
	return out
}

func (ls *lmtpSession) countData(err error) {
	var se *smtp.SMTPError
	code := 250
	if errors.As(err, &se) {
		code = se.Code
	}
	switch code / 100 {
	case 2:
		ls.s.m.lmtpRcptOK.Add(1)
	case 5:
		ls.s.m.lmtpRcptPermFail.Add(1)
	default:
		ls.s.m.lmtpRcptTempFail.Add(1)
	}
}

func (ls *lmtpSession) setAll(status smtp.StatusCollector, b *lmtpBackend, err error) {
	for _, r := range b.rcpts {
		status.SetStatus(r.client, err)
		ls.countData(err)
	}
	b.rcpts, b.inTxn = nil, false
}

// resetBackends ends any open backend transaction (RSET).
func (ls *lmtpSession) resetBackends() {
	for _, b := range ls.backends {
		if b.err == nil && b.inTxn {
			if err := b.c.Reset(); err != nil {
				ls.broken(b, err)
			}
		}
		b.inTxn, b.rcpts = false, nil
	}
	// Forget failed backends so the next transaction retries them.
	for name, b := range ls.backends {
		if b.err != nil {
			delete(ls.backends, name)
		}
	}
}

func (ls *lmtpSession) Reset() { ls.resetBackends() }

func (ls *lmtpSession) Logout() error {
	for name, b := range ls.backends {
		if b.err == nil {
			b.c.Quit()
		}
		delete(ls.backends, name)
	}
	return nil
}

var _ smtp.LMTPSession = (*lmtpSession)(nil)

func (s *Server) serveLMTP(ln net.Listener) error {
	srv := s.newLMTPServer(s.ctx)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.lmtp[srv] = struct{}{}
	s.mu.Unlock()
	err := srv.Serve(&bareListener{
		Listener: &limitListener{Listener: ln, s: s},
		tls:      s.tlsConf,
		timeout:  s.cfg.LMTP.Timeout.Std(),
		maxLine:  s.cfg.LMTP.MaxLineLength,
		log:      s.log.With("proto", "lmtp"),
	})
	if s.isClosed() || errors.Is(err, net.ErrClosed) || errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// limitListener applies the connection limits and counters to go-smtp's
// accept loop, which the gateway does not own.
type limitListener struct {
	net.Listener
	s *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c.RemoteAddr())
		if !l.s.conns.Acquire(ip) {
			l.s.m.rejectedConns.Add(1)
			c.SetWriteDeadline(time.Now().Add(time.Second))
			c.Write([]byte("421 4.3.2 Too many connections\r\n"))
			c.Close()
			continue
		}
		l.s.m.connLMTP.Add(1)
		l.s.m.active.Add(1)
		return &countedConn{Conn: c, release: func() {
			l.s.m.active.Add(-1)
			l.s.conns.Release(ip)
		}}, nil
	}
}

type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
