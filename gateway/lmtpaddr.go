package gateway

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bare LMTP addresses.
//
// Cyrus lmtpd accepts "RCPT TO:<alice>" and "MAIL FROM:<postmaster>", and
// Cyrus deliver, sendmail's cyrusv2 mailer and Python's smtplib.LMTP send
// them; go-smtp's path parser insists on local@domain and has no option to
// relax it. Rather than replace go-smtp, lmtpAddrConn sits between the
// client's connection and go-smtp and rewrites exactly those command
// lines to "<alice@bare.rookery.invalid>"; the session strips the sentinel
// again (stripBare) before routing and before forwarding, so a bare
// recipient is routed like Cyrus would route it and reaches the backend
// bare. The sentinel is under .invalid (RFC 2606), so it can never be a
// real domain, and it is removed from go-smtp's replies too.
//
// The filter must never touch message content, so it tracks go-smtp's
// state from both directions: DATA content starts when go-smtp writes its
// 354 reply and ends with the end-of-data line exactly as go-smtp's own
// data reader recognises it; after a well-formed "BDAT n" line the next n
// bytes pass verbatim (go-smtp always advertises CHUNKING and cannot be
// told not to). Read hands go-smtp at most one command line per call, so a
// command line is only classified once go-smtp has answered the one before
// it (and, for DATA, written its 354).
//
// STARTTLS: go-smtp upgrades by wrapping its net.Conn in tls.Server, which
// would put this filter underneath the TLS layer, blind to the commands
// that follow. So go-smtp gets no TLS config and the filter owns STARTTLS:
// it advertises it in the LHLO reply, answers the command, runs the
// handshake on the raw connection and keeps filtering the plaintext. To
// reset go-smtp's transaction state as RFC 3207 requires, it then feeds
// go-smtp an RSET whose reply it drops. go-smtp still remembers the LHLO
// name from before TLS (so MAIL without a new LHLO is accepted); nothing
// in the gateway uses that name.

// bareDomain is the reserved domain the filter appends to bare paths.
const bareDomain = "bare.rookery.invalid"

const bareSuffix = "@" + bareDomain

// maxFilterLine bounds how much of one command line the filter holds
// while waiting for its end. RFC 5321 allows 512 bytes; longer lines pass
// through unchanged so go-smtp's own limits answer them.
const maxFilterLine = 4096

// stripBare undoes the filter's rewrite: "alice@bare.rookery.invalid" is
// the bare "alice" the client sent.
func stripBare(addr string) string {
	if n := len(addr) - len(bareSuffix); n > 0 && strings.EqualFold(addr[n:], bareSuffix) {
		return addr[:n]
	}
	return addr
}

// lmtpAddrOptions configures the filter for one LMTP listener.
type lmtpAddrOptions struct {
	// TLS enables STARTTLS (nil: go-smtp refuses it).
	TLS *tls.Config
	// Timeout bounds the STARTTLS reply and handshake (0: none).
	Timeout time.Duration
	// MaxLineLength is go-smtp's line limit: a rewrite that would push a
	// line past it is not made (the client gets go-smtp's syntax error
	// instead of a closed connection).
	MaxLineLength int
	Log           *slog.Logger
}

// lmtpAddrListener wraps every accepted connection in the filter.
type lmtpAddrListener struct {
	net.Listener
	opts lmtpAddrOptions
}

func (l *lmtpAddrListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newLMTPAddrConn(c, l.opts), nil
}

// dotState mirrors go-smtp's data reader (data.go), so the filter and
// go-smtp agree byte for byte on where DATA content ends. Note that, like
// go-smtp, only CRLF starts a line here: ".\n" after a bare LF is content.
type dotState uint8

const (
	dotBeginLine dotState = iota
	dotDot
	dotDotCR
	dotCR
	dotData
	dotEnd
)

func (s dotState) next(b byte) dotState {
	switch s {
	case dotBeginLine:
		switch b {
		case '.':
			return dotDot
		case '\r':
			return dotCR
		}
		return dotData
	case dotDot:
		if b == '\r' {
			return dotDotCR
		}
		return dotData
	case dotDotCR:
		if b == '\n' {
			return dotEnd
		}
		return dotData
	case dotCR:
		if b == '\n' {
			return dotBeginLine
		}
		return dotData
	case dotData:
		if b == '\r' {
			return dotCR
		}
		return dotData
	}
	return s
}

// lmtpAddrConn is the filter: go-smtp reads the client through it and
// writes its replies through it.
type lmtpAddrConn struct {
	opts lmtpAddrOptions
	raw  net.Conn // the accepted connection, under TLS once upgraded

	// Read side. go-smtp reads from one goroutine at a time (its
	// connection goroutine, or its LMTP data goroutine while the other
	// waits), but the LMTP data goroutine may drain while the connection
	// goroutine writes replies, so both sides lock.
	rmu      sync.Mutex
	buf      []byte   // reusable backing array for rbuf
	rbuf     []byte   // read from the client, not yet classified
	out      []byte   // classified, not yet handed to go-smtp
	rerr     error    // read error to report once rbuf is drained
	chunk    uint64   // BDAT bytes still to pass verbatim
	skipLine bool     // passing the rest of an overlong line
	dot      dotState // DATA content position

	// Write side.
	wmu    sync.Mutex
	wline  []byte // first bytes of the reply line being written
	inLine bool   // a reply line has started and not ended
	wdrop  bool   // the current reply line is dropped

	// Shared between both sides.
	mu        sync.Mutex
	cur       net.Conn // raw, or the TLS connection over it
	isTLS     bool
	dataArmed bool // DATA passed; a 354 reply starts content
	inData    bool // go-smtp is reading DATA content
	lhloArmed bool // LHLO passed; its reply gets STARTTLS
	swallow   int  // replies to drop (to the RSET the filter injects)
}

func newLMTPAddrConn(c net.Conn, opts lmtpAddrOptions) *lmtpAddrConn {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &lmtpAddrConn{opts: opts, raw: c, cur: c, buf: make([]byte, 0, 4096)}
}

func (c *lmtpAddrConn) conn() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

func (c *lmtpAddrConn) Close() error                       { return c.conn().Close() }
func (c *lmtpAddrConn) LocalAddr() net.Addr                { return c.raw.LocalAddr() }
func (c *lmtpAddrConn) RemoteAddr() net.Addr               { return c.raw.RemoteAddr() }
func (c *lmtpAddrConn) SetDeadline(t time.Time) error      { return c.conn().SetDeadline(t) }
func (c *lmtpAddrConn) SetReadDeadline(t time.Time) error  { return c.conn().SetReadDeadline(t) }
func (c *lmtpAddrConn) SetWriteDeadline(t time.Time) error { return c.conn().SetWriteDeadline(t) }

// Read returns the client's bytes with bare paths rewritten, never more
// than one command line at a time.
func (c *lmtpAddrConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		switch {
		case len(c.out) > 0:
			n := copy(p, c.out)
			c.out = c.out[n:]
			return n, nil
		case c.chunk > 0:
			return c.passChunk(p)
		case c.dataMode():
			return c.passData(p)
		case c.skipLine:
			if err := c.need(); err != nil {
				return 0, err
			}
			n := len(c.rbuf)
			if i := bytes.IndexByte(c.rbuf, '\n'); i >= 0 {
				n, c.skipLine = i+1, false
			}
			c.out, c.rbuf = c.rbuf[:n], c.rbuf[n:]
			continue
		}
		i := bytes.IndexByte(c.rbuf, '\n')
		if i < 0 {
			if len(c.rbuf) > maxFilterLine {
				c.out, c.rbuf, c.skipLine = c.rbuf, nil, true
				continue
			}
			if err := c.fill(); err != nil {
				if len(c.rbuf) == 0 {
					return 0, err
				}
				// A last, unterminated line goes to go-smtp as it is,
				// the error after it.
				c.out, c.rbuf, c.rerr = c.rbuf, nil, err
			}
			continue
		}
		line := c.rbuf[:i+1]
		c.rbuf = c.rbuf[i+1:]
		if err := c.command(line); err != nil {
			return 0, err
		}
	}
}

func (c *lmtpAddrConn) dataMode() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inData
}

// need makes sure rbuf holds at least one byte.
func (c *lmtpAddrConn) need() error {
	if len(c.rbuf) > 0 {
		return nil
	}
	return c.fill()
}

// fill reads more client bytes into rbuf. It returns nil only when it
// added some; an error that came with bytes is kept for the next call.
func (c *lmtpAddrConn) fill() error {
	if err := c.rerr; err != nil {
		c.rerr = nil
		return err
	}
	if len(c.rbuf) == 0 {
		c.rbuf = c.buf[:0]
	}
	if cap(c.rbuf)-len(c.rbuf) < 512 {
		nb := make([]byte, len(c.rbuf), 2*cap(c.rbuf)+4096)
		copy(nb, c.rbuf)
		c.rbuf = nb
	}
	cur := c.conn()
	for range 100 {
		n, err := cur.Read(c.rbuf[len(c.rbuf):cap(c.rbuf)])
		c.rbuf = c.rbuf[:len(c.rbuf)+n]
		if n > 0 {
			c.rerr = err
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// passChunk hands go-smtp BDAT chunk bytes verbatim.
func (c *lmtpAddrConn) passChunk(p []byte) (int, error) {
	if err := c.need(); err != nil {
		return 0, err
	}
	n := min(len(p), len(c.rbuf))
	if uint64(n) > c.chunk {
		n = int(c.chunk)
	}
	copy(p, c.rbuf[:n])
	c.rbuf = c.rbuf[n:]
	c.chunk -= uint64(n)
	return n, nil
}

// passData hands go-smtp DATA content verbatim, up to and including the
// end-of-data line.
func (c *lmtpAddrConn) passData(p []byte) (int, error) {
	if err := c.need(); err != nil {
		return 0, err
	}
	n := min(len(p), len(c.rbuf))
	end := false
	for i, b := range c.rbuf[:n] {
		if c.dot = c.dot.next(b); c.dot == dotEnd {
			n, end = i+1, true
			break
		}
	}
	copy(p, c.rbuf[:n])
	c.rbuf = c.rbuf[n:]
	if end {
		c.dot = dotBeginLine
		c.mu.Lock()
		c.inData = false
		c.mu.Unlock()
	}
	return n, nil
}

// command classifies one complete command line the way go-smtp's
// parseCmd will, and queues it (rewritten if it is a bare path) for
// go-smtp.
func (c *lmtpAddrConn) command(line []byte) error {
	body := bytes.TrimRight(line, "\r\n")
	if hasPrefixFold(body, "STARTTLS") { // go-smtp checks this first, too
		return c.startTLS(line)
	}
	var verb string
	if len(body) == 4 || len(body) > 5 && body[4] == ' ' {
		verb = strings.ToUpper(string(body[:4]))
	}
	switch verb {
	case "DATA":
		c.mu.Lock()
		c.dataArmed = true
		c.mu.Unlock()
	case "LHLO":
		c.mu.Lock()
		c.lhloArmed = c.opts.TLS != nil && !c.isTLS
		c.mu.Unlock()
	case "BDAT":
		if len(body) > 5 {
			if n, ok := bdatSize(string(body[5:])); ok {
				c.chunk = n
			}
		}
	case "RCPT":
		line = c.rewritePath(line, len(body), "TO:")
	case "MAIL":
		line = c.rewritePath(line, len(body), "FROM:")
	}
	c.out = line
	return nil
}

// bdatSize reports the chunk size of a BDAT argument that go-smtp's
// handleBdat accepts; go-smtp reads (or discards) the chunk exactly then.
func bdatSize(arg string) (uint64, bool) {
	args := strings.Fields(strings.TrimSpace(arg))
	if len(args) == 0 || len(args) > 2 || len(args) == 2 && !strings.EqualFold(args[1], "LAST") {
		return 0, false
	}
	n, err := strconv.ParseUint(args[0], 10, 32)
	return n, err == nil
}

// rewritePath turns "VERB KEY<local>..." into "VERB KEY<local@sentinel>..."
// when local is a non-empty, unquoted local part without '@' (what
// go-smtp's dot-string parser takes). Everything else, including the null
// path "<>", source routes and quoted local parts, is returned unchanged.
// bodyLen is the length of line without its line end.
func (c *lmtpAddrConn) rewritePath(line []byte, bodyLen int, key string) []byte {
	if bodyLen <= 5 { // "RCPT" alone: go-smtp answers it
		return line
	}
	i := skipBlanks(line[:bodyLen], 5)
	if !hasPrefixFold(line[i:bodyLen], key) {
		return line
	}
	i = skipBlanks(line[:bodyLen], i+len(key))
	if i >= bodyLen || line[i] != '<' {
		return line
	}
	j := i + 1
	for j < bodyLen && dotStringByte(line[j]) {
		j++
	}
	if j == i+1 || j >= bodyLen || line[j] != '>' {
		return line
	}
	out := make([]byte, 0, len(line)+len(bareSuffix))
	out = append(out, line[:j]...)
	out = append(out, bareSuffix...)
	out = append(out, line[j:]...)
	if c.opts.MaxLineLength > 0 && len(out) > c.opts.MaxLineLength {
		return line
	}
	return out
}

func skipBlanks(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}

// dotStringByte reports whether go-smtp's parseLocalPart takes b in an
// unquoted local part; '@' ends one, and a bare path has none.
func dotStringByte(b byte) bool {
	return b != '@' && strings.IndexByte("()<>[]:;\\,\" \t", b) < 0
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

// startTLS handles STARTTLS in place of go-smtp (see the comment at the
// top of the file).
func (c *lmtpAddrConn) startTLS(line []byte) error {
	c.mu.Lock()
	isTLS := c.isTLS
	c.mu.Unlock()
	switch {
	case c.opts.TLS == nil:
		c.out = line // go-smtp answers "502 5.5.1 TLS not supported"
		return nil
	case isTLS:
		return c.reply("502 5.5.1 Already running in TLS\r\n")
	}
	if err := c.reply("220 2.0.0 Ready to start TLS\r\n"); err != nil {
		return err
	}
	// Anything the client pipelined after STARTTLS arrived in plaintext
	// and must not be run as if it came under TLS.
	if len(c.rbuf) > 0 {
		c.opts.Log.Warn("LMTP client pipelined commands after STARTTLS; discarded",
			"remote", c.raw.RemoteAddr().String(), "bytes", len(c.rbuf))
	}
	c.rbuf, c.rerr = nil, nil
	if c.opts.Timeout > 0 {
		c.raw.SetDeadline(time.Now().Add(c.opts.Timeout))
	}
	tc := tls.Server(c.raw, c.opts.TLS)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("gateway: LMTP STARTTLS handshake: %w", err)
	}
	c.mu.Lock()
	c.cur, c.isTLS = tc, true
	c.swallow++
	c.mu.Unlock()
	c.out = []byte("RSET\r\n")
	return nil
}

// reply writes a reply of the filter's own.
func (c *lmtpAddrConn) reply(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	cur := c.conn()
	if c.opts.Timeout > 0 {
		cur.SetWriteDeadline(time.Now().Add(c.opts.Timeout))
	}
	if _, err := io.WriteString(cur, s); err != nil {
		return fmt.Errorf("gateway: LMTP reply: %w", err)
	}
	return nil
}

// Write passes go-smtp's replies to the client, watching them for the
// 354 that starts DATA content and the LHLO reply, removing the sentinel
// and dropping the reply to the filter's own RSET.
func (c *lmtpAddrConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	out := make([]byte, 0, len(p)+32)
	for rest := p; len(rest) > 0; {
		seg := rest
		i := bytes.IndexByte(rest, '\n')
		if i >= 0 {
			seg = rest[:i+1]
		}
		rest = rest[len(seg):]
		if !c.inLine {
			c.inLine, c.wline = true, c.wline[:0]
			c.mu.Lock()
			if c.wdrop = c.swallow > 0; c.wdrop {
				c.swallow--
			}
			c.mu.Unlock()
		}
		if n := min(4-len(c.wline), len(seg)); n > 0 {
			c.wline = append(c.wline, seg[:n]...)
		}
		if !c.wdrop {
			out = append(out, bytes.ReplaceAll(seg, []byte(bareSuffix+">"), []byte(">"))...)
		}
		if i < 0 {
			break
		}
		c.inLine = false
		if !c.wdrop && c.replyLine(c.wline) {
			out = append(out, "250-STARTTLS\r\n"...)
		}
	}
	if _, err := c.conn().Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// replyLine notes a complete reply line (its first bytes) and reports
// whether STARTTLS is to be advertised after it.
func (c *lmtpAddrConn) replyLine(prefix []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dataArmed {
		c.dataArmed = false
		c.inData = bytes.HasPrefix(prefix, []byte("354"))
	}
	if c.lhloArmed {
		c.lhloArmed = false
		return bytes.HasPrefix(prefix, []byte("250-"))
	}
	return false
}
