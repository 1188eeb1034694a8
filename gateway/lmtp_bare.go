package gateway

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
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
// them. go-smtp (v0.25, the newest) insists on local@domain and has no
// option to relax it, so bareConn sits between the client and go-smtp:
//
//   - Read hands go-smtp one command line at a time and appends
//     "@bare.rookery.invalid" to a bare path in MAIL and RCPT. The session
//     strips it again (stripBare) before routing and forwarding, so the
//     backend gets the address as the client sent it. The domain is under
//     .invalid (RFC 2606), so it can never be a real one.
//   - Message content is never touched: after DATA, if go-smtp answered
//     354, everything up to the end-of-data line passes as it is
//     (dataEnd mirrors go-smtp's data reader byte for byte); after
//     "BDAT n" the next n bytes pass as they are (go-smtp reads or
//     discards exactly those).
//   - Write removes the sentinel from go-smtp's replies.
//   - STARTTLS: go-smtp would put its TLS layer underneath this filter,
//     which would then see ciphertext. So go-smtp gets no TLS config, and
//     bareConn advertises STARTTLS in the LHLO reply, answers it, runs the
//     handshake and feeds go-smtp an RSET (its reply dropped) to forget
//     the transaction as RFC 3207 requires.
//
// Because go-smtp reads the next command only after answering the one
// before, the filter knows go-smtp's reply to DATA when it classifies the
// next line. go-smtp writes each reply line with textproto's PrintfLine,
// which flushes per line, so Write looks only at the start of a write
// that starts a line.

const bareSuffix = "@bare.rookery.invalid"

// stripBare undoes the rewrite: "alice@bare.rookery.invalid" is the bare
// "alice" the client sent.
func stripBare(addr string) string {
	if n := len(addr) - len(bareSuffix); n > 0 && strings.EqualFold(addr[n:], bareSuffix) {
		return addr[:n]
	}
	return addr
}

// bareListener wraps every accepted connection in the filter.
type bareListener struct {
	net.Listener
	tls     *tls.Config   // nil: no STARTTLS (go-smtp refuses it)
	timeout time.Duration // bounds STARTTLS (0: none)
	maxLine int           // go-smtp's line limit: no rewrite crosses it
	log     *slog.Logger
}

func (l *bareListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

func (l *bareListener) wrap(c net.Conn) *bareConn {
	return &bareConn{Conn: c, l: l, br: bufio.NewReader(c)}
}

// bareConn is the filter around one client connection. Its embedded Conn
// is the accepted one; once STARTTLS ran, tlsConn is used over it.
type bareConn struct {
	net.Conn
	l *bareListener

	// Read side, used by whichever go-smtp goroutine reads (one at a time).
	br      *bufio.Reader // client bytes, plaintext after STARTTLS
	pending []byte        // bytes for go-smtp, handed out before reading on
	chunk   uint64        // BDAT bytes still to pass as they are
	inData  bool          // passing DATA content
	dot     dotState      // where in DATA content
	long    bool          // passing the rest of a line longer than br's buffer
	sawData bool          // the last command was DATA

	mu       sync.Mutex // guards the fields below; never held during I/O
	tlsConn  *tls.Conn
	last354  bool // go-smtp's last reply line was 354
	lhlo     bool // add STARTTLS to the LHLO reply being written
	drop     bool // drop go-smtp's next reply line (to the filter's RSET)
	dropping bool // dropping the rest of the current reply line
	midLine  bool // go-smtp's last write did not end a line

	wmu sync.Mutex // one write at a time
}

// conn is the connection currently in use.
func (c *bareConn) conn() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tlsConn != nil {
		return c.tlsConn
	}
	return c.Conn
}

func (c *bareConn) Close() error                       { return c.conn().Close() }
func (c *bareConn) SetDeadline(t time.Time) error      { return c.conn().SetDeadline(t) }
func (c *bareConn) SetReadDeadline(t time.Time) error  { return c.conn().SetReadDeadline(t) }
func (c *bareConn) SetWriteDeadline(t time.Time) error { return c.conn().SetWriteDeadline(t) }

// Read gives go-smtp the client's bytes, bare paths rewritten.
func (c *bareConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// next sets pending to the next piece of client input: a BDAT chunk or
// DATA content as it is, or one (possibly rewritten) command line.
func (c *bareConn) next() error {
	if c.sawData {
		c.mu.Lock()
		c.inData, c.sawData = c.last354, false
		c.mu.Unlock()
	}
	if c.chunk > 0 || c.inData {
		if _, err := c.br.Peek(1); err != nil {
			return err
		}
		b, _ := c.br.Peek(c.br.Buffered())
		n := len(b)
		if c.chunk > 0 {
			n = int(min(uint64(n), c.chunk))
			c.chunk -= uint64(n)
		} else if i, end := c.dot.scan(b); end {
			n, c.inData, c.dot = i, false, dotBeginLine
		}
		c.pending = b[:n]
		_, err := c.br.Discard(n)
		return err
	}
	line, err := c.br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		c.pending, c.long = line, true // go-smtp's own limit answers it
		return nil
	case err != nil && len(line) == 0:
		return err
	case c.long || err != nil: // a long line's end, or the last line
		c.pending, c.long = line, false
		return nil
	}
	return c.command(line)
}

// command classifies one command line the way go-smtp's parseCmd will.
func (c *bareConn) command(line []byte) error {
	body := bytes.TrimRight(line, "\r\n")
	if len(body) >= 8 && strings.EqualFold(string(body[:8]), "STARTTLS") && c.l.tls != nil {
		return c.startTLS()
	}
	c.pending = line
	if len(body) != 4 && (len(body) < 6 || body[4] != ' ') {
		return nil
	}
	switch strings.ToUpper(string(body[:4])) {
	case "DATA":
		c.sawData = true
	case "LHLO":
		c.mu.Lock()
		c.lhlo = c.tlsConn == nil && c.l.tls != nil
		c.mu.Unlock()
	case "BDAT":
		c.chunk = bdatSize(string(body[4:]))
	case "MAIL":
		c.pending = c.rewrite(line, len(body), "FROM:")
	case "RCPT":
		c.pending = c.rewrite(line, len(body), "TO:")
	}
	return nil
}

// bdatSize is the chunk size of a BDAT argument go-smtp accepts (it reads
// or discards the chunk exactly then), else 0.
func bdatSize(arg string) uint64 {
	args := strings.Fields(arg)
	if len(args) == 0 || len(args) > 2 || len(args) == 2 && !strings.EqualFold(args[1], "LAST") {
		return 0
	}
	n, _ := strconv.ParseUint(args[0], 10, 32)
	return n
}

// rewrite turns "VERB KEY<local>..." into "VERB KEY<local@sentinel>..."
// when local is non-empty and made of the bytes go-smtp takes in an
// unquoted local part, and has no '@'. The null path "<>", source routes
// and quoted local parts are left to go-smtp, as is a line the rewrite
// would push past go-smtp's limit.
func (c *bareConn) rewrite(line []byte, bodyLen int, key string) []byte {
	body := line[:bodyLen]
	i := skipBlanks(body, 5)
	if len(body)-i < len(key) || !strings.EqualFold(string(body[i:i+len(key)]), key) {
		return line
	}
	i = skipBlanks(body, i+len(key))
	if i >= len(body) || body[i] != '<' {
		return line
	}
	j := i + 1 + bytes.IndexFunc(body[i+1:], func(r rune) bool {
		return r == '@' || strings.ContainsRune("()<>[]:;\\,\" \t", r)
	})
	if j <= i+1 || body[j] != '>' || c.l.maxLine > 0 && len(line)+len(bareSuffix) > c.l.maxLine {
		return line
	}
	return append(append(append([]byte(nil), line[:j]...), bareSuffix...), line[j:]...)
}

func skipBlanks(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}

// startTLS answers STARTTLS in go-smtp's place.
func (c *bareConn) startTLS() error {
	if c.conn() != c.Conn {
		return c.reply("502 5.5.1 Already running in TLS\r\n")
	}
	if err := c.reply("220 2.0.0 Ready to start TLS\r\n"); err != nil {
		return err
	}
	// Anything pipelined after STARTTLS came in plaintext and must not run
	// as if it came under TLS.
	if n := c.br.Buffered(); n > 0 {
		c.l.log.Warn("LMTP client pipelined commands after STARTTLS; discarded",
			"remote", c.RemoteAddr().String(), "bytes", n)
	}
	if c.l.timeout > 0 {
		c.Conn.SetDeadline(time.Now().Add(c.l.timeout))
	}
	tc := tls.Server(c.Conn, c.l.tls)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("gateway: LMTP STARTTLS handshake: %w", err)
	}
	c.br.Reset(tc)
	c.mu.Lock()
	c.tlsConn, c.drop = tc, true
	c.mu.Unlock()
	c.pending = []byte("RSET\r\n")
	return nil
}

// reply writes a reply of the filter's own.
func (c *bareConn) reply(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	cur := c.conn()
	if c.l.timeout > 0 {
		cur.SetWriteDeadline(time.Now().Add(c.l.timeout))
	}
	if _, err := cur.Write([]byte(s)); err != nil {
		return fmt.Errorf("gateway: LMTP reply: %w", err)
	}
	return nil
}

// Write passes one write of go-smtp's (a reply line, or part of a long
// one) to the client.
func (c *bareConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	out := bytes.ReplaceAll(p, []byte(bareSuffix+">"), []byte(">"))
	c.mu.Lock()
	if !c.midLine { // a reply line starts
		c.dropping, c.drop = c.drop, false
		c.last354 = bytes.HasPrefix(p, []byte("354"))
		if c.lhlo && bytes.HasSuffix(p, []byte("\n")) {
			if c.lhlo = false; bytes.HasPrefix(p, []byte("250-")) {
				out = append(out, "250-STARTTLS\r\n"...)
			}
		}
	}
	c.midLine = !bytes.HasSuffix(p, []byte("\n"))
	dropping := c.dropping
	c.mu.Unlock()
	if dropping {
		return len(p), nil
	}
	if _, err := c.conn().Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// dotState follows go-smtp's data reader (data.go) so both agree on where
// DATA content ends. As in go-smtp, only CRLF starts a line: ".\r\n"
// after a bare LF, or after "\r\r\n", is content.
type dotState uint8

const (
	dotBeginLine dotState = iota
	dotDot                // "." at the beginning of a line
	dotDotCR              // ".\r" at the beginning of a line
	dotCR                 // "\r" elsewhere
	dotData
)

// scan advances over b and reports how many bytes of it are content up
// to and including the end-of-data line, if that line is in b.
func (s *dotState) scan(b []byte) (int, bool) {
	for i, ch := range b {
		switch {
		case *s == dotDotCR && ch == '\n':
			return i + 1, true
		case *s == dotCR && ch == '\n':
			*s = dotBeginLine
		case *s == dotBeginLine && ch == '.':
			*s = dotDot
		case *s == dotDot && ch == '\r':
			*s = dotDotCR
		case (*s == dotBeginLine || *s == dotData) && ch == '\r':
			*s = dotCR
		default:
			*s = dotData
		}
	}
	return len(b), false
}
