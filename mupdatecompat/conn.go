package mupdatecompat

import (
	"bufio"
	"compress/flate"
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rookery/rookery/auth"
	wire "github.com/rookery/rookery/internal/imapwire"
)

// conn is one MUPDATE session. A single goroutine runs it (serve); once
// UPDATE starts streaming, a second one (the streamer) owns the output and
// the session goroutine only reads commands and hands replies over.
type conn struct {
	srv *Server
	cfg *Config
	log *slog.Logger

	raw         net.Conn // the accepted connection
	nc          net.Conn // the transport in use: raw or its *tls.Conn
	implicitTLS bool
	tls         bool
	deflate     *flate.Writer // non-nil once COMPRESS is active
	// deflateDirty: the compressor holds output not yet sync-flushed.
	deflateDirty bool
	br           *bufio.Reader // buffered transport input (or inflated input)
	r            *wire.Reader
	w            *wire.Writer

	// Before login (preauth.go).
	source   string // remote address without the port
	accepted time.Time
	preElem  *list.Element          // in Server.pre while not logged in
	evicted  atomic.Pointer[string] // BYE text once replaced by a newer connection
	checking atomic.Bool            // a password check is running: not replaceable

	authed  bool
	result  string // kind of the last tagged reply, for ObserveCommand
	id      auth.Identity
	profile Profile
	stream  *streamer // non-nil while streaming

	// ctx ends when the connection is killed (hard close); commands in
	// progress use it, so graceful shutdown lets them finish.
	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
}

func newConn(s *Server, nc net.Conn, implicitTLS bool) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{
		srv:         s,
		cfg:         &s.cfg,
		log:         s.log.With("remote", nc.RemoteAddr().String()),
		raw:         nc,
		source:      sourceOf(nc.RemoteAddr()),
		accepted:    time.Now(),
		nc:          nc,
		implicitTLS: implicitTLS,
		ctx:         ctx,
		cancel:      cancel,
	}
}

// interrupt wakes a session blocked reading, for graceful shutdown: it
// notices the server is closing and says BYE.
func (c *conn) interrupt() { c.raw.SetReadDeadline(time.Now()) }

// kill closes the connection at once.
func (c *conn) kill() {
	c.cancel()
	c.close()
}

// close closes the accepted connection; that ends TLS and compression
// layered on it, and wakes both goroutines of the session.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.raw.Close()
	})
}

// setTransport (re)builds the reader and writer on nc, after accept and
// after STARTTLS.
func (c *conn) setTransport(nc net.Conn) {
	c.nc = nc
	c.br = bufio.NewReaderSize(nc, 4096)
	c.setReader(c.br)
	if c.w == nil {
		c.w = wire.NewWriter(deadlineWriter{c})
	} else {
		c.w.Reset(deadlineWriter{c})
	}
}

func (c *conn) setReader(br *bufio.Reader) {
	lim := c.cfg.PreAuthLimits
	if c.authed {
		lim = c.cfg.Limits
	}
	c.r = wire.NewReader(br, lim)
	c.r.SetContinuation(c.goAhead)
}

// deadlineWriter gives every write to the transport a fresh deadline, so
// that a peer that stops reading is dropped after WriteTimeout however long
// the output (a LIST of millions of entries) is.
type deadlineWriter struct{ c *conn }

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.c.nc.SetWriteDeadline(time.Now().Add(d.c.cfg.WriteTimeout))
	return d.c.nc.Write(p)
}

// flush sends buffered output, through the compressor if active.
func (c *conn) flush() error {
	if err := c.w.Flush(); err != nil {
		return err
	}
	if c.deflate != nil && c.deflateDirty {
		c.deflateDirty = false
		return c.deflate.Flush() // a sync flush, as Z_SYNC_FLUSH in Cyrus
	}
	return nil
}

// goAhead answers a {N} synchronizing literal.
func (c *conn) goAhead() error {
	if c.stream != nil {
		return c.stream.line("+ go ahead")
	}
	c.w.WriteLine("+ go ahead")
	return c.flush()
}

func (c *conn) serve() {
	defer c.close()
	if c.implicitTLS {
		tc := tls.Server(c.raw, c.srv.tlsConfig())
		if err := c.handshake(tc); err != nil {
			c.log.Info("mupdate TLS handshake failed", "err", err)
			return
		}
		c.tls = true
		c.setTransport(tc)
	} else {
		c.setTransport(c.raw)
	}
	c.log.Debug("mupdate connection opened", "tls", c.tls)
	c.banner()
	if c.flush() != nil {
		return
	}
	for {
		if !c.next() {
			break
		}
	}
	if c.stream != nil {
		c.stream.stop()
	}
	c.log.Debug("mupdate connection closed", "identity", c.id.Name)
}

func (c *conn) handshake(tc *tls.Conn) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.HandshakeTimeout)
	defer cancel()
	return tc.HandshakeContext(ctx)
}

// next reads and runs one command; false ends the session.
func (c *conn) next() bool {
	c.nc.SetReadDeadline(c.readDeadline())
	if c.srv.closing.Load() {
		c.final("*", "BYE", "Server shutting down")
		return false
	}
	if c.closedBeforeLogin() {
		return false
	}
	cmd, err := c.r.ReadCommand()
	if err != nil {
		if !c.readFailed(err) {
			return false
		}
	} else if !c.dispatch(cmd) {
		return false
	}
	if c.stream == nil && c.r.Buffered() == 0 {
		// Output is flushed after each burst of pipelined input, as
		// Cyrus does.
		return c.flush() == nil
	}
	return true
}

// readFailed handles a failed ReadCommand; false ends the session.
func (c *conn) readFailed(err error) bool {
	var we *wire.Error
	if errors.As(err, &we) {
		tag := we.Tag
		if tag == "" {
			tag = "*"
		}
		if we.Fatal {
			c.log.Warn("mupdate protocol error; closing", "err", we.Text, "identity", c.id.Name)
		} else {
			c.log.Debug("mupdate protocol error", "err", we.Text, "identity", c.id.Name)
		}
		if we.Fatal {
			c.final(tag, "BAD", we.Text)
			c.linger()
			return false
		}
		c.reply(tag, "BAD", we.Text)
		return true
	}
	var ne net.Error
	switch {
	case c.srv.closing.Load():
		c.final("*", "BYE", "Server shutting down")
	case errors.As(err, &ne) && ne.Timeout() && c.closedBeforeLogin():
	case errors.As(err, &ne) && ne.Timeout():
		c.log.Info("mupdate connection idle; closing", "identity", c.id.Name, "idle", c.cfg.IdleTimeout)
		c.final("*", "BYE", "idle timeout")
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	default:
		c.log.Debug("mupdate read failed", "err", err, "identity", c.id.Name)
	}
	return false
}

// reply writes a tagged (or "*") OK/NO/BAD/BYE reply, through the streamer
// while streaming.
func (c *conn) reply(tag, kind, text string) {
	c.noteResult(tag, kind)
	if c.stream != nil {
		c.stream.send(streamReq{tag: tag, kind: kind, text: text})
		return
	}
	c.w.WriteReply(tag, kind, text)
}

// final writes the last reply of the session and flushes it; while
// streaming, the streamer writes it after what it is sending and stops.
func (c *conn) final(tag, kind, text string) {
	c.noteResult(tag, kind)
	if c.stream != nil {
		c.stream.send(streamReq{tag: tag, kind: kind, text: text, last: true})
		c.stream.wait()
		return
	}
	c.w.WriteReply(tag, kind, text)
	c.flush()
}

// Lingering close after a fatal protocol error: the peer is still sending
// (the rest of a 2 MiB tag, a literal it announced). Closing with unread
// input makes the kernel send a reset, which can destroy the BAD reply
// before the peer reads it; so the write side is shut first and the input
// drained for a short, bounded while.
const (
	lingerTime  = time.Second
	lingerBytes = 4 << 20
)

func (c *conn) linger() {
	if tc, ok := c.raw.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	c.raw.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, c.raw, lingerBytes)
}

// command describes how a command is accepted and run: run takes the
// arguments by meaning and returns an error that answer renders (nil with
// ok "" when run has replied itself).
type command struct {
	run       func(c *conn, tag string, r request) error
	layout    string // the arguments' meanings (requestOf)
	ok        string // the OK text; "" when run replies itself
	min, max  int    // argument counts
	preAuth   bool   // allowed before login
	streaming bool   // allowed while streaming
}

var commands = map[string]command{
	"AUTHENTICATE": {run: (*conn).authenticate, layout: "v", ok: textAuthenticated, min: 1, max: 2, preAuth: true},
	"STARTTLS":     {run: (*conn).startTLS, preAuth: true},
	"COMPRESS":     {run: (*conn).compress, layout: "v", min: 1, max: 1},
	"LOGOUT":       {run: (*conn).logout, preAuth: true, streaming: true},
	"NOOP":         {run: (*conn).noop, streaming: true},
	"RESERVE":      {run: (*conn).reserve, layout: "nl", ok: "done", min: 2, max: 2},
	"ACTIVATE":     {run: (*conn).activate, layout: "nla", ok: "done", min: 3, max: 3},
	"DEACTIVATE":   {run: (*conn).deactivate, layout: "nl", ok: "done", min: 2, max: 2},
	"DELETE":       {run: (*conn).delete, layout: "n", ok: "done", min: 1, max: 1},
	"FIND":         {run: (*conn).find, layout: "n", ok: "Search completed", min: 1, max: 1},
	"LIST":         {run: (*conn).list, layout: "l", ok: "list complete", max: 1},
	"UPDATE":       {run: (*conn).update, layout: "h", max: maxUpdateHosts},
}

// dispatch checks a command against the session state, with the texts and
// in the order of Cyrus's docmd, and runs it. false ends the session.
func (c *conn) dispatch(cmd *wire.Command) bool {
	defer c.observe(cmd, time.Now())
	if cmd.Tag == "" {
		c.reply("*", "BAD", "Need command")
		return true
	}
	if cmd.Name == "" {
		c.reply(cmd.Tag, "BAD", "Null command")
		return true
	}
	name := strings.ToUpper(cmd.Name)
	h, ok := commands[name]
	if !ok || (name == "STARTTLS" && c.srv.tlsConfig() == nil) || (name == "COMPRESS" && !c.cfg.Compress) {
		c.reply(cmd.Tag, "BAD", "Unrecognized command")
		return true
	}
	switch {
	case c.stream != nil && !h.streaming:
		c.reply(cmd.Tag, "BAD", "not legal when streaming")
		return true
	case !c.authed && !h.preAuth:
		c.reply(cmd.Tag, "BAD", "Please login first")
		return true
	case len(cmd.Args) < h.min:
		c.reply(cmd.Tag, "BAD", "Missing arguments")
		return true
	case len(cmd.Args) > h.max:
		c.reply(cmd.Tag, "BAD", "Extra arguments")
		return true
	}
	return c.answer(cmd.Tag, h.ok, h.run(c, cmd.Tag, requestOf(h.layout, cmd.Args)))
}

func (c *conn) logout(tag string, _ request) error {
	c.final(tag, "OK", "bye-bye")
	return errClosed
}

func (c *conn) noop(tag string, _ request) error {
	if c.stream != nil {
		return c.stream.barrier(tag)
	}
	c.w.WriteReply(tag, "OK", "Noop done")
	return nil
}

// banner sends the greeting: mechanisms, STARTTLS while not encrypted,
// COMPRESS while not compressed, PARTIAL-UPDATE, then the OK line that
// Cyrus clients wait for.
func (c *conn) banner() {
	var b strings.Builder
	b.WriteString("* AUTH")
	if !c.cfg.RequireTLSForAuth || c.tls {
		for _, m := range c.cfg.Mechanisms {
			b.WriteString(" ")
			b.WriteString(wire.Quote(strings.ToUpper(m)))
		}
	}
	c.w.WriteLine(b.String())
	if c.srv.tlsConfig() != nil && !c.tls {
		c.w.WriteLine("* STARTTLS")
	}
	if c.cfg.Compress && c.deflate == nil {
		c.w.WriteLine(`* COMPRESS "DEFLATE"`)
	}
	c.w.WriteLine("* PARTIAL-UPDATE")
	c.w.WriteLine("* OK MUPDATE " + wire.Quote(c.cfg.ServerName) + " " + wire.Quote(c.cfg.Implementation) + " " +
		wire.Quote(c.cfg.Version) + ` "(master)"`)
}
