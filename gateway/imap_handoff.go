package gateway

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// The gateway's own pre-login reader (imap.go) talks to strangers with
// every read bounded; go-imap's imapserver has no such limits. So the
// login happens there, and only a logged-in connection is handed to
// imapserver, which then runs the authenticated and selected states with
// an imapMurderSession. imapserver has no entry point for a connection
// that is already past its greeting, so the handoff goes through a
// listener fed from a channel, the session starts in the PREAUTH state,
// and its greeting line (which the client must not see a second time) is
// dropped by handoffConn.

// murderCaps are the capabilities the murder session serves; imapserver
// adds the ones every session has (UNSELECT, IDLE, ENABLE, ...).
var murderCaps = imap.CapSet{
	imap.CapIMAP4rev1:    {},
	imap.CapNamespace:    {},
	imap.CapUIDPlus:      {},
	imap.CapESearch:      {},
	imap.CapListExtended: {},
	imap.CapListStatus:   {},
	imap.CapMove:         {},
	imap.CapChildren:     {},
	imap.CapSpecialUse:   {},
	imap.CapLiteralPlus:  {},
	imap.CapBinary:       {},
	imap.CapStatusSize:   {},
}

// murderCapsAfterLogin is the CAPABILITY list imapserver gives in the
// authenticated state with murderCaps (its own CAPABILITY answer is
// replaced by the interceptor's, which adds the extensions it serves).
const murderCapsAfterLogin = "IMAP4rev1 SASL-IR LITERAL- UNSELECT ENABLE IDLE UTF8=ACCEPT NAMESPACE UIDPLUS ESEARCH LIST-EXTENDED LIST-STATUS MOVE STATUS=SIZE BINARY CHILDREN SPECIAL-USE LITERAL+"

// imapHandoff runs the shared imapserver for logged-in murder sessions.
type imapHandoff struct {
	srv     *imapserver.Server
	ln      *chanListener
	serving chan struct{} // closed when srv.Serve has returned
}

func newIMAPHandoff(log *slog.Logger) *imapHandoff {
	h := &imapHandoff{ln: &chanListener{ch: make(chan net.Conn), closed: make(chan struct{})}, serving: make(chan struct{})}
	h.srv = imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			hc, ok := c.NetConn().(*handoffConn)
			if !ok {
				return nil, nil, fmt.Errorf("gateway: unexpected connection %T", c.NetConn())
			}
			hc.session.conn = c
			return hc.session, &imapserver.GreetingData{PreAuth: true}, nil
		},
		Caps:         murderCaps,
		Logger:       slogPrintf{log},
		InsecureAuth: true, // never used: sessions start authenticated
	})
	go func() {
		defer close(h.serving)
		h.srv.Serve(h.ln)
	}()
	return h
}

// serve hands conn (logged in, with pending bytes already read from the
// client) to imapserver and waits until the session ends.
func (h *imapHandoff) serve(ctx context.Context, conn net.Conn, pending []byte, sess *imapMurderSession) {
	hc := &handoffConn{Conn: conn, pending: pending, session: sess, done: make(chan struct{})}
	defer func() {
		sess.s.m.bytesToBackend.Add(uint64(hc.in.Load()))
		sess.s.m.bytesToClient.Add(uint64(hc.out.Load()))
	}()
	conn.SetDeadline(time.Time{})
	select {
	case h.ln.ch <- hc:
	case <-h.ln.closed:
		sess.Close()
		conn.Close()
		return
	case <-ctx.Done():
		sess.Close()
		conn.Close()
		return
	}
	<-hc.done
}

// close stops the hand-off. imapserver's Close must not run before Serve
// has returned (both touch one WaitGroup), so the listener goes first.
func (h *imapHandoff) close() {
	h.ln.Close()
	<-h.serving
	h.srv.Close()
}

// chanListener is a net.Listener whose connections come from a channel.
type chanListener struct {
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// handoffConn is a client connection handed to imapserver: bytes the
// pre-login reader had buffered are read first, commands imapserver does
// not know are answered by the interceptor, imapserver's greeting is
// swallowed, and Close tells the waiting gateway goroutine.
type handoffConn struct {
	net.Conn
	pending  []byte
	greeted  bool
	in, out  atomic.Int64 // bytes from and to the client, for the metrics
	session  *imapMurderSession
	icpt     *interceptor
	doneOnce sync.Once
	done     chan struct{}
}

func (c *handoffConn) Read(p []byte) (int, error) {
	if c.icpt == nil {
		c.icpt = newInterceptor(rawReader{c}, countingWriter{c}, c.session.runExtension)
	}
	return c.icpt.Read(p)
}

// rawReader reads what the client sent: first the pre-login leftovers.
type rawReader struct{ c *handoffConn }

func (r rawReader) Read(p []byte) (int, error) {
	c := r.c
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		c.in.Add(int64(n))
		return n, nil
	}
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

// countingWriter writes the interceptor's answers to the client.
type countingWriter struct{ c *handoffConn }

func (w countingWriter) Write(p []byte) (int, error) {
	n, err := w.c.Conn.Write(p)
	w.c.out.Add(int64(n))
	return n, err
}

func (c *handoffConn) Write(p []byte) (int, error) {
	if c.greeted {
		n, err := c.Conn.Write(p)
		c.out.Add(int64(n))
		return n, err
	}
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		return len(p), nil
	}
	c.greeted = true
	n, err := c.Conn.Write(p[i+1:])
	c.out.Add(int64(n))
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *handoffConn) Close() error {
	err := c.Conn.Close()
	c.doneOnce.Do(func() { close(c.done) })
	return err
}

// slogPrintf adapts slog to imapserver's Logger.
type slogPrintf struct{ log *slog.Logger }

func (l slogPrintf) Printf(format string, args ...any) {
	msg := "imapserver: " + fmt.Sprintf(format, args...)
	if strings.Contains(msg, "panic") {
		l.log.Error(msg)
		return
	}
	l.log.Debug(msg)
}
