package gateway

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-smtp"

	"github.com/rookery/rookery/fsm"
)

// The filter is tested in front of a real go-smtp server (LMTP mode, the
// gateway's settings where they matter), so "what go-smtp does" is never
// an assumption of the test: runFilter feeds a scripted client through
// the filter into go-smtp and records what go-smtp read, what the client
// got back and what go-smtp handed to the session.

const filterTestMaxLine = 512

// scriptConn is the client side: Read returns the script at most chunk
// bytes at a time (so lines split across reads), Write records replies.
type scriptConn struct {
	mu     sync.Mutex
	in     []byte
	chunk  int
	out    bytes.Buffer
	closed chan struct{}
	once   sync.Once
}

func (c *scriptConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.in[:min(len(c.in), c.chunk)])
	c.in = c.in[n:]
	return n, nil
}

func (c *scriptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *scriptConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func loopback(port int) net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port} }

func (c *scriptConn) LocalAddr() net.Addr              { return loopback(24) }
func (c *scriptConn) RemoteAddr() net.Addr             { return loopback(50000) }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// recordingConn sits between the filter and go-smtp and records what
// go-smtp read, and where in that stream it wrote each 354.
type recordingConn struct {
	net.Conn
	mu         sync.Mutex
	read       bytes.Buffer
	dataStarts []int
	readAhead  bool // a 354 was written with more than the DATA line read
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.read.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *recordingConn) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("354")) {
		c.mu.Lock()
		c.dataStarts = append(c.dataStarts, c.read.Len())
		// The filter must not have handed go-smtp anything past the
		// DATA line (which go-smtp takes with trailing blanks, too).
		b := bytes.TrimRight(c.read.Bytes(), "\r\n")
		last := b[bytes.LastIndexByte(b, '\n')+1:]
		if len(last) < 4 || !strings.EqualFold(string(last[:4]), "DATA") || len(bytes.TrimSpace(last[4:])) != 0 {
			c.readAhead = true
		}
		c.mu.Unlock()
	}
	return c.Conn.Write(p)
}

// oneConnListener hands go-smtp one connection.
type oneConnListener struct {
	c    chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return loopback(24) }

// captureSession accepts everything and keeps what go-smtp parsed.
type captureSession struct {
	mu     *sync.Mutex
	froms  *[]string
	rcpts  *[]string
	bodies *[][]byte
}

func (s captureSession) Mail(from string, _ *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	*s.froms = append(*s.froms, from)
	return nil
}

func (s captureSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	*s.rcpts = append(*s.rcpts, to)
	return nil
}

func (s captureSession) Data(io.Reader) error { return errors.New("LMTPData is used") }

func (s captureSession) LMTPData(r io.Reader, _ smtp.StatusCollector) error {
	b, err := io.ReadAll(r)
	s.mu.Lock()
	*s.bodies = append(*s.bodies, b)
	s.mu.Unlock()
	return err
}

func (s captureSession) Reset()        {}
func (s captureSession) Logout() error { return nil }

type filterRun struct {
	server     []byte   // what go-smtp read through the filter
	client     string   // what the client got back
	froms      []string // reverse paths go-smtp parsed
	rcpts      []string // recipients go-smtp parsed
	bodies     [][]byte // message contents go-smtp delivered
	dataStarts []int    // offsets in server where go-smtp wrote a 354
	readAhead  bool
}

// runFilter plays in as the client of one go-smtp LMTP connection behind
// the filter (no STARTTLS: no TLS config).
func runFilter(tb testing.TB, in []byte, chunk int) filterRun {
	tb.Helper()
	var run filterRun
	var mu sync.Mutex
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return captureSession{mu: &mu, froms: &run.froms, rcpts: &run.rcpts, bodies: &run.bodies}, nil
	}))
	srv.LMTP = true
	srv.Domain = "gw.test"
	srv.MaxLineLength = filterTestMaxLine
	srv.MaxMessageBytes = 4096
	srv.MaxRecipients = 10
	srv.ErrorLog = slogPrinter{slog.New(slog.NewTextHandler(io.Discard, nil))}
	sc := &scriptConn{in: in, chunk: chunk, closed: make(chan struct{})}
	filter := &bareListener{maxLine: filterTestMaxLine, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	rc := &recordingConn{Conn: filter.wrap(sc)}
	ln := &oneConnListener{c: make(chan net.Conn, 1), done: make(chan struct{})}
	ln.c <- rc
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	select {
	case <-sc.closed:
	case <-time.After(10 * time.Second):
		tb.Fatalf("go-smtp did not finish the script %q", in)
	}
	srv.Close()
	<-served
	mu.Lock()
	defer mu.Unlock()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	run.server = bytes.Clone(rc.read.Bytes())
	run.client = sc.out.String()
	run.dataStarts = rc.dataStarts
	run.readAhead = rc.readAhead
	return run
}

const rewritten = bareSuffix + ">"

func TestLMTPAddrFilterAgainstGoSMTP(t *testing.T) {
	const hello = "LHLO mta.test\r\nMAIL FROM:<sender@example.com>\r\n"
	long := strings.Repeat("a", filterTestMaxLine-20)
	tests := []struct {
		name   string
		in     string
		want   string // what go-smtp must read: in with the rewrites
		closes bool   // go-smtp closes early: it reads a prefix of want
		froms  []string
		rcpts  []string
		bodies []string
		client []string // substrings of the replies, in order
		absent []string // never in the replies
	}{
		{name: "bare recipient is rewritten and routed as bare",
			in:     hello + "RCPT TO:<alice>\r\nQUIT\r\n",
			want:   hello + "RCPT TO:<alice" + rewritten + "\r\nQUIT\r\n",
			froms:  []string{"sender@example.com"},
			rcpts:  []string{"alice" + bareSuffix},
			client: []string{"250 2.0.0 I'll make sure <alice> gets this", "221 "},
			absent: []string{bareSuffix}},
		{name: "recipient with a domain is untouched",
			in:    hello + "RCPT TO:<bob@example.com>\r\nRCPT TO:<carol+box@example.org>\r\n",
			want:  hello + "RCPT TO:<bob@example.com>\r\nRCPT TO:<carol+box@example.org>\r\n",
			froms: []string{"sender@example.com"},
			rcpts: []string{"bob@example.com", "carol+box@example.org"}},
		{name: "bare MAIL FROM is rewritten and its parameters kept verbatim",
			in:     "LHLO mta.test\r\nMAIL FROM:<postmaster> SIZE=100  BODY=8BITMIME\r\nRCPT TO:<alice+folder>\r\n",
			want:   "LHLO mta.test\r\nMAIL FROM:<postmaster" + rewritten + " SIZE=100  BODY=8BITMIME\r\nRCPT TO:<alice+folder" + rewritten + "\r\n",
			froms:  []string{"postmaster" + bareSuffix},
			rcpts:  []string{"alice+folder" + bareSuffix},
			client: []string{"accepting mail from <postmaster>", "<alice+folder> gets this"},
			absent: []string{bareSuffix}},
		{name: "lower-case verbs and blanks around the path",
			in:    "lhlo mta.test\r\nmail from: <postmaster>\r\nrcpt  to:\t<alice>\r\n",
			want:  "lhlo mta.test\r\nmail from: <postmaster" + rewritten + "\r\nrcpt  to:\t<alice" + rewritten + "\r\n",
			froms: []string{"postmaster" + bareSuffix},
			rcpts: []string{"alice" + bareSuffix}},
		{name: "null reverse path is untouched",
			in:    "LHLO mta.test\r\nMAIL FROM:<>\r\n",
			want:  "LHLO mta.test\r\nMAIL FROM:<>\r\n",
			froms: []string{""}},
		{name: "empty, quoted, source-routed and unbracketed paths are untouched",
			in:     hello + "RCPT TO:<>\r\nRCPT TO:<\"al ice\">\r\nRCPT TO:<@relay:alice>\r\nRCPT TO:alice\r\n",
			want:   hello + "RCPT TO:<>\r\nRCPT TO:<\"al ice\">\r\nRCPT TO:<@relay:alice>\r\nRCPT TO:alice\r\n",
			froms:  []string{"sender@example.com"},
			client: []string{"501 ", "501 ", "501 ", "501 "}},
		{name: "bare-LF command lines keep their line end",
			in:    "LHLO mta.test\nMAIL FROM:<postmaster>\nRCPT TO:<alice>\n",
			want:  "LHLO mta.test\nMAIL FROM:<postmaster" + rewritten + "\nRCPT TO:<alice" + rewritten + "\n",
			froms: []string{"postmaster" + bareSuffix},
			rcpts: []string{"alice" + bareSuffix}},
		{name: "DATA content is passed unchanged, commands after it are filtered again",
			in:     hello + "RCPT TO:<alice>\r\nDATA\r\nRCPT TO:<x>\r\nMAIL FROM:<y>\r\n..\r\n.\r\nMAIL FROM:<z>\r\nRCPT TO:<bob>\r\n",
			want:   hello + "RCPT TO:<alice" + rewritten + "\r\nDATA\r\nRCPT TO:<x>\r\nMAIL FROM:<y>\r\n..\r\n.\r\nMAIL FROM:<z" + rewritten + "\r\nRCPT TO:<bob" + rewritten + "\r\n",
			froms:  []string{"sender@example.com", "z" + bareSuffix},
			rcpts:  []string{"alice" + bareSuffix, "bob" + bareSuffix},
			bodies: []string{"RCPT TO:<x>\r\nMAIL FROM:<y>\r\n.\r\n"},
			client: []string{"354 ", "250 2.0.0 <alice> OK"}},
		{name: "bare LF and CR CR LF do not end DATA, as in go-smtp",
			in:     hello + "RCPT TO:<alice>\r\nDATA\r\na\n.\nRCPT TO:<x>\r\nb\r\r\n.\r\nRCPT TO:<y>\r\n.\r\n",
			want:   hello + "RCPT TO:<alice" + rewritten + "\r\nDATA\r\na\n.\nRCPT TO:<x>\r\nb\r\r\n.\r\nRCPT TO:<y>\r\n.\r\n",
			froms:  []string{"sender@example.com"},
			rcpts:  []string{"alice" + bareSuffix},
			bodies: []string{"a\n.\nRCPT TO:<x>\r\nb\r\r\n.\r\nRCPT TO:<y>\r\n"}},
		{name: "refused DATA does not start content",
			in:     hello + "DATA\r\nRCPT TO:<alice>\r\n",
			want:   hello + "DATA\r\nRCPT TO:<alice" + rewritten + "\r\n",
			froms:  []string{"sender@example.com"},
			rcpts:  []string{"alice" + bareSuffix},
			client: []string{"502 5.5.1 Missing RCPT TO", "<alice> gets this"}},
		{name: "BDAT chunks are passed unchanged",
			in:     hello + "RCPT TO:<alice>\r\nBDAT 4\r\nRCPTBDAT 9 last\r\n TO:<x>\r\nMAIL FROM:<z>\r\nRCPT TO:<bob>\r\n",
			want:   hello + "RCPT TO:<alice" + rewritten + "\r\nBDAT 4\r\nRCPTBDAT 9 last\r\n TO:<x>\r\nMAIL FROM:<z" + rewritten + "\r\nRCPT TO:<bob" + rewritten + "\r\n",
			froms:  []string{"sender@example.com", "z" + bareSuffix},
			rcpts:  []string{"alice" + bareSuffix, "bob" + bareSuffix},
			bodies: []string{"RCPT TO:<x>\r\n"},
			client: []string{"250 2.0.0 Continue", "250 2.0.0 <alice> OK"}},
		{name: "refused BDAT chunk is still passed unchanged",
			in:     "LHLO mta.test\r\nBDAT 13\r\nRCPT TO:<x>\r\nMAIL FROM:<z>\r\n",
			want:   "LHLO mta.test\r\nBDAT 13\r\nRCPT TO:<x>\r\nMAIL FROM:<z" + rewritten + "\r\n",
			froms:  []string{"z" + bareSuffix},
			client: []string{"502 5.5.1 Missing RCPT TO"}},
		{name: "malformed BDAT has no chunk",
			in:     hello + "BDAT 5 MORE\r\nRCPT TO:<alice>\r\n",
			want:   hello + "BDAT 5 MORE\r\nRCPT TO:<alice" + rewritten + "\r\n",
			froms:  []string{"sender@example.com"},
			rcpts:  []string{"alice" + bareSuffix},
			client: []string{"501 5.5.4 Unknown BDAT argument"}},
		{name: "overlong line passes unchanged to go-smtp's limit",
			in:     hello + "RCPT TO:<" + strings.Repeat("a", 5000) + ">\r\nRCPT TO:<alice>\r\n",
			want:   hello + "RCPT TO:<" + strings.Repeat("a", 5000) + ">\r\nRCPT TO:<alice" + rewritten + "\r\n",
			closes: true,
			froms:  []string{"sender@example.com"},
			client: []string{"500 5.4.0 Too long line"}},
		{name: "no rewrite pushes a line over the limit",
			in:     hello + "RCPT TO:<" + long + ">\r\n",
			want:   hello + "RCPT TO:<" + long + ">\r\n",
			froms:  []string{"sender@example.com"},
			client: []string{"501 5.5.2"}},
		{name: "STARTTLS without TLS is left to go-smtp",
			in:     "LHLO mta.test\r\nSTARTTLS\r\nMAIL FROM:<postmaster>\r\n",
			want:   "LHLO mta.test\r\nSTARTTLS\r\nMAIL FROM:<postmaster" + rewritten + "\r\n",
			froms:  []string{"postmaster" + bareSuffix},
			client: []string{"502 5.5.1 TLS not supported"},
			absent: []string{"STARTTLS"}},
	}
	for _, tc := range tests {
		for _, chunk := range []int{1, 3, 4096} {
			t.Run(fmt.Sprintf("%s/reads of %d", tc.name, chunk), func(t *testing.T) {
				run := runFilter(t, []byte(tc.in), chunk)
				if got := string(run.server); got != tc.want && !(tc.closes && strings.HasPrefix(tc.want, got)) {
					t.Errorf("go-smtp read\n%q\nwant\n%q", got, tc.want)
				}
				if fmt.Sprint(run.froms) != fmt.Sprint(tc.froms) || fmt.Sprint(run.rcpts) != fmt.Sprint(tc.rcpts) {
					t.Errorf("go-smtp parsed MAIL %q RCPT %q, want %q %q", run.froms, run.rcpts, tc.froms, tc.rcpts)
				}
				var bodies []string
				for _, b := range run.bodies {
					bodies = append(bodies, string(b))
				}
				if fmt.Sprint(bodies) != fmt.Sprint(tc.bodies) {
					t.Errorf("messages %q, want %q", bodies, tc.bodies)
				}
				rest := run.client
				for _, s := range tc.client {
					i := strings.Index(rest, s)
					if i < 0 {
						t.Fatalf("replies lack %q (in order):\n%s", s, run.client)
					}
					rest = rest[i+len(s):]
				}
				for _, s := range tc.absent {
					if strings.Contains(run.client, s) {
						t.Errorf("replies contain %q:\n%s", s, run.client)
					}
				}
			})
		}
	}
}

// goSMTPDataLen returns how many bytes of b go-smtp's data reader takes as
// DATA content (end-of-data line included), or len(b) if it never ends. It
// is transcribed from go-smtp's data.go independently of dotState.scan, as the
// fuzz test's reference.
func goSMTPDataLen(b []byte) int {
	const (
		begin = iota
		dot
		dotCR
		cr
		data
	)
	st := begin
	for i, c := range b {
		switch {
		case st == begin && c == '.':
			st = dot
		case (st == begin || st == data) && c == '\r':
			st = cr
		case st == dot && c == '\r':
			st = dotCR
		case st == dotCR && c == '\n':
			return i + 1
		case st == cr && c == '\n':
			st = begin
		case st == data:
		default:
			st = data
		}
	}
	return len(b)
}

// insertions aligns what go-smtp read (out) with what the client sent
// (in): out must be a prefix of in with the sentinel inserted only right
// before a '>'. It returns the offsets in out of the insertions.
func insertions(in, out []byte) ([]int, error) {
	var at []int
	i := 0
	for o := 0; o < len(out); {
		switch {
		case i < len(in) && out[o] == in[i]:
			i, o = i+1, o+1
		case i < len(in) && in[i] == '>' && bytes.HasPrefix(out[o:], []byte(bareSuffix)):
			at = append(at, o)
			o += len(bareSuffix)
		default:
			return nil, fmt.Errorf("byte %d read by go-smtp (%q) is not the client's byte %d", o, out[o:min(o+20, len(out))], i)
		}
	}
	return at, nil
}

// FuzzLMTPAddrFilter runs arbitrary client input through the filter into
// go-smtp. It must never panic; go-smtp must read exactly the client's
// bytes apart from sentinel insertions before '>'; no insertion may fall
// in DATA content (from a 354 to the end-of-data line); and no message
// content or reply may carry the sentinel unless the client sent it.
// Each input runs a go-smtp server, so minimising new inputs takes long
// (execs show 0/sec meanwhile); -fuzzminimizetime 2s keeps it moving.
func FuzzLMTPAddrFilter(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		run := runFilter(t, in, int(chunk)+1)
		if run.readAhead {
			t.Fatalf("go-smtp had read past DATA when it wrote 354: %q", run.server)
		}
		at, err := insertions(in, run.server)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range run.dataStarts {
			e := s + goSMTPDataLen(run.server[s:])
			for _, o := range at {
				if o >= s && o < e {
					t.Fatalf("DATA content [%d,%d) changed at %d: %q", s, e, o, run.server)
				}
			}
		}
		if !bytes.Contains(bytes.ToLower(in), []byte(bareSuffix)) {
			for _, b := range run.bodies {
				if bytes.Contains(b, []byte(bareSuffix)) {
					t.Fatalf("message content carries the sentinel: %q", b)
				}
			}
			if strings.Contains(run.client, bareSuffix) {
				t.Fatalf("replies carry the sentinel: %q", run.client)
			}
		}
	})
}

func TestStripBareRoutesLikeCyrusLmtpd(t *testing.T) {
	virt := Namer{VirtualDomains: true, DefaultDomain: "example.com", Lowercase: true}
	plain := Namer{Lowercase: true}
	tests := []struct {
		name    string
		n       Namer
		in      string
		forward string // what the backend is sent
		mailbox string // what routes it
	}{
		{"bare user is the user's INBOX", plain, "alice" + bareSuffix, "alice", "user.alice"},
		{"bare user+detail is the same user", plain, "alice+folder" + bareSuffix, "alice+folder", "user.alice"},
		{"bare +folder is a shared folder", plain, "+shared.news" + bareSuffix, "+shared.news", "shared.news"},
		{"bare user with virtdomains is in the default domain", virt, "Alice" + bareSuffix, "Alice", "user.alice"},
		{"the sentinel is matched case-insensitively", virt, "bob@BARE.Rookery.INVALID", "bob", "user.bob"},
		{"a real domain is kept", virt, "bob@other.org", "bob@other.org", "other.org!user.bob"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := stripBare(tc.in)
			if addr != tc.forward {
				t.Fatalf("stripBare(%q) = %q, want %q", tc.in, addr, tc.forward)
			}
			r, err := tc.n.ParseRecipient(addr)
			if err != nil || r.Mailbox != tc.mailbox {
				t.Fatalf("ParseRecipient(%q) = %q, %v; want %q", addr, r.Mailbox, err, tc.mailbox)
			}
		})
	}
}

// TestLMTPSTARTTLSKeepsBareAddresses drives the gateway's own LMTP
// listener: the filter owns STARTTLS so that it still sees the commands
// once they are encrypted.
func TestLMTPSTARTTLSKeepsBareAddresses(t *testing.T) {
	g := preloginGateway(t, nil)
	startTLS := func(t *testing.T, c *conn, pipelined string) *conn {
		t.Helper()
		c.send("STARTTLS\r\n" + pipelined)
		c.expect("220 2.0.0 ")
		tc := tls.Client(c.c, &tls.Config{RootCAs: g.ca, ServerName: "gw.test"})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		return &conn{tb: t, c: tc, r: newReader(tc)}
	}
	t.Run("STARTTLS is offered before TLS only", func(t *testing.T) {
		c := dial(t, g.lmtp)
		c.expect("220 ")
		c.send("LHLO mta.test\r\n")
		if lines := c.until("250 "); !strings.Contains(strings.Join(lines, "\n"), "250-STARTTLS") {
			t.Fatalf("LHLO before TLS: %q", lines)
		}
		c = startTLS(t, c, "")
		c.send("LHLO mta.test\r\n")
		c.expect("250-Hello mta.test") // not the reply to the filter's own RSET
		if lines := c.until("250 "); strings.Contains(strings.Join(lines, "\n"), "STARTTLS") {
			t.Fatalf("LHLO under TLS offers STARTTLS: %q", lines)
		}
		c.send("STARTTLS\r\n")
		c.expect("502 5.5.1 Already running in TLS")
	})
	t.Run("bare addresses are filtered under TLS", func(t *testing.T) {
		c := dial(t, g.lmtp)
		c.expect("220 ")
		c = startTLS(t, c, "")
		c.send("LHLO mta.test\r\nMAIL FROM:<postmaster>\r\nRCPT TO:<nobody>\r\nQUIT\r\n")
		c.until("250 ")
		c.expect("250 2.0.0 Roger, accepting mail from <postmaster>")
		c.expect("550 5.1.1 User unknown")
		c.expect("221 ")
	})
	t.Run("commands pipelined after STARTTLS are discarded", func(t *testing.T) {
		c := dial(t, g.lmtp)
		c.expect("220 ")
		c.send("LHLO mta.test\r\n")
		c.until("250 ")
		c = startTLS(t, c, "MAIL FROM:<mallory>\r\n")
		c.send("NOOP\r\n")
		c.expect("250 2.0.0 I have successfully done nothing")
	})
	t.Run("the transaction before STARTTLS is forgotten", func(t *testing.T) {
		c := dial(t, g.lmtp)
		c.expect("220 ")
		c.send("LHLO mta.test\r\nMAIL FROM:<postmaster>\r\n")
		c.until("250 ")
		c.expect("250 ")
		c = startTLS(t, c, "")
		c.send("RCPT TO:<nobody>\r\n") // no LHLO, which would reset by itself
		c.expect("502 5.5.1 Missing MAIL FROM")
	})
}

// TestLMTPBareRecipientsAreDelivered delivers through the gateway to the
// real Cyrus backends with bare addresses, the way Cyrus deliver and
// sendmail's cyrusv2 mailer send them.
func TestLMTPBareRecipientsAreDelivered(t *testing.T) {
	m := murder(t)
	g := startGateway(t, testConfig(m), replicaFromMaster(t, m))
	tp := lmtpClient(t, g.lmtp)
	lmtpCmd(t, tp, 250, "LHLO mta.test")
	lmtpCmd(t, tp, 250, "MAIL FROM:<postmaster>")
	rcpts := []struct {
		rcpt   string
		code   int
		reply  string
		server string // backend whose reply the DATA answer is ("" if refused)
	}{
		{"alice", 250, "2.", "be1"},
		{"bob+nosuchfolder", 250, "2.", "be2"},
		{"nobody", 550, "5.1.1", ""},
		{"+nosuchshared", 550, "5.1.1", ""},
	}
	for _, r := range rcpts {
		if err := tp.PrintfLine("RCPT TO:<%s>", r.rcpt); err != nil {
			t.Fatal(err)
		}
		if code, msg, _ := tp.ReadResponse(0); code != r.code || !strings.HasPrefix(msg, r.reply) || strings.Contains(msg, bareSuffix) {
			t.Fatalf("RCPT TO:<%s>: %d %s, want %d %s", r.rcpt, code, msg, r.code, r.reply)
		}
	}
	lmtpCmd(t, tp, 354, "DATA")
	msgID := fmt.Sprintf("<bare-%d@gw.test>", time.Now().UnixNano())
	w := tp.DotWriter()
	w.Write([]byte(message(msgID)))
	w.Close()
	var accepted []dataReply
	for _, r := range rcpts {
		if r.server != "" {
			accepted = append(accepted, dataReply{r.rcpt, r.server})
		}
	}
	expectBackendReplies(t, tp, accepted)
	lmtpCmd(t, tp, 221, "QUIT")
	if n := countMessageID(t, m.BE1, "alice", "alicepw", msgID); n != 1 {
		t.Errorf("alice has %d copies on be1, want 1", n)
	}
	if n := countMessageID(t, m.BE2, "bob", "bobpw", msgID); n != 1 {
		t.Errorf("bob has %d copies in his INBOX on be2, want 1", n)
	}
	// Cyrus qualifies a bare reverse path with its own name, which shows
	// that it got "postmaster" as the client sent it.
	if rp := returnPath(t, m.BE1, "alice", "alicepw", msgID); rp != "<postmaster@be1>" {
		t.Errorf("Return-Path %q, want <postmaster@be1>", rp)
	}
}

// returnPath fetches the Return-Path Cyrus wrote into a delivered message.
func returnPath(tb testing.TB, b cyrusServer, user, pass, msgID string) string {
	tb.Helper()
	c := loginDirect(tb, b, user, pass)
	defer c.Close()
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		tb.Fatal(err)
	}
	data, err := c.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: msgID}}}, nil).Wait()
	if err != nil || len(data.AllSeqNums()) != 1 {
		tb.Fatalf("search %s: %v %v", msgID, data, err)
	}
	section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Return-Path"}, Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(data.AllSeqNums()...), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil || len(msgs) != 1 {
		tb.Fatalf("fetch %s: %v", msgID, err)
	}
	_, v, _ := strings.Cut(string(msgs[0].FindBodySection(section)), ":")
	return strings.TrimSpace(v)
}

// fakeLMTPBackend is an LMTP server that accepts everything and records
// the MAIL and RCPT lines it gets, to see exactly what the gateway
// forwards (Cyrus without virtdomains would ignore a domain anyway).
func fakeLMTPBackend(t *testing.T) (string, func() []string) {
	ln := listen(t)
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var got []string
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tp := textproto.NewConn(c)
				tp.PrintfLine("220 fake LMTP")
				rcpts := 0
				for {
					line, err := tp.ReadLine()
					if err != nil {
						return
					}
					switch verb := strings.ToUpper(line[:min(4, len(line))]); verb {
					case "LHLO":
						tp.PrintfLine("250-fake")
						tp.PrintfLine("250 PIPELINING")
					case "MAIL", "RCPT":
						mu.Lock()
						got = append(got, line)
						mu.Unlock()
						if verb == "RCPT" {
							rcpts++
						}
						tp.PrintfLine("250 2.1.0 ok")
					case "DATA":
						tp.PrintfLine("354 go ahead")
						if _, err := tp.ReadDotBytes(); err != nil {
							return
						}
						for ; rcpts > 0; rcpts-- {
							tp.PrintfLine("250 2.1.5 delivered")
						}
					case "RSET":
						rcpts = 0
						tp.PrintfLine("250 2.0.0 ok")
					case "QUIT":
						tp.PrintfLine("221 2.0.0 bye")
						return
					default:
						tp.PrintfLine("500 5.5.2 what")
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

func TestLMTPForwardsAddressesAsTheClientSentThem(t *testing.T) {
	addr, got := fakeLMTPBackend(t)
	cfg := testConfig(nil)
	cfg.Servers["fake"] = ServerAddrs{LMTP: addr}
	rep := NewReplica(DefaultReplicaConfig())
	rep.SetReady(true)
	setEntry(rep, "user.alice", "fake!default", fsm.StateActive)
	g := startGateway(t, cfg, rep)
	tp := lmtpClient(t, g.lmtp)
	lmtpCmd(t, tp, 250, "LHLO mta.test")
	lmtpCmd(t, tp, 250, "MAIL FROM:<postmaster>")
	rcpts := []string{"alice", "alice+box", "alice@example.com", "Alice"}
	for _, r := range rcpts {
		if msg := lmtpCmd(t, tp, 250, "RCPT TO:<%s>", r); strings.Contains(msg, bareSuffix) {
			t.Errorf("RCPT reply %q shows the sentinel", msg)
		}
	}
	lmtpCmd(t, tp, 354, "DATA")
	w := tp.DotWriter()
	w.Write([]byte(message("<fwd@gw.test>")))
	w.Close()
	for _, r := range rcpts {
		_, msg, err := tp.ReadResponse(250)
		if err != nil || !strings.Contains(msg, "<"+r+"> ") || strings.Contains(msg, bareSuffix) {
			t.Fatalf("DATA reply for %s: %q %v", r, msg, err)
		}
	}
	lmtpCmd(t, tp, 221, "QUIT")
	want := []string{"MAIL FROM:<postmaster>", "RCPT TO:<alice>", "RCPT TO:<alice+box>", "RCPT TO:<alice@example.com>", "RCPT TO:<Alice>"}
	if fmt.Sprint(got()) != fmt.Sprint(want) {
		t.Fatalf("backend got %q, want %q", got(), want)
	}
}
