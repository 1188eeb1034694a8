package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/rookery/rookery/internal/imapwire"
)

// pop3Session is one POP3 client before login (RFC 1939, CAPA from RFC
// 2449, STLS from RFC 2595, AUTH from RFC 5034). After login it is a
// byte relay like IMAP.
type pop3Session struct {
	s      *Server
	raw    net.Conn // the accepted connection, under any TLS
	conn   net.Conn
	br     *bufio.Reader
	r      *imapwire.Reader // reads lines only: bounded, over-long ones skipped
	bw     *bufio.Writer
	ip     string
	tls    bool
	user   string // from USER, waiting for PASS
	errors int
}

func (s *Server) servePOP3(ctx context.Context, conn net.Conn, implicitTLS bool) {
	s.m.connPOP3.Add(1)
	raw := conn
	if implicitTLS {
		tc, err := s.serverHandshake(ctx, conn)
		if err != nil {
			return
		}
		conn = tc
	}
	ps := &pop3Session{s: s, raw: raw, ip: remoteIP(conn.RemoteAddr()), tls: implicitTLS}
	ps.reset(conn)
	ps.run(ctx)
}

func (ps *pop3Session) reset(conn net.Conn) {
	lim := ps.s.cfg.Limits
	ps.conn = conn
	ps.bw = bufio.NewWriterSize(conn, 4096)
	ps.br = bufio.NewReaderSize(conn, 4096)
	ps.r = imapwire.NewReader(ps.br, imapwire.Limits{MaxLineLength: lim.MaxLine, MaxDiscard: 16 * lim.MaxLine})
}

func (ps *pop3Session) run(ctx context.Context) {
	defer ps.conn.Close()
	writef(ps.bw, "+OK %s Rookery POP3 gateway ready\r\n", ps.s.cfg.Hostname)
	for ctx.Err() == nil {
		if ps.bw.Flush() != nil {
			return
		}
		ps.conn.SetDeadline(time.Now().Add(ps.s.cfg.Limits.PreLoginTimeout.Std()))
		line, err := ps.r.ReadLine()
		if err != nil {
			var we *imapwire.Error
			switch {
			case !errors.As(err, &we):
				return
			case we.Fatal:
				ps.err(we.Text)
				ps.bw.Flush()
				return
			case !ps.protocolError(we.Text):
				return
			}
			continue
		}
		done, handoff := ps.dispatch(ctx, string(line))
		if handoff != nil {
			if ps.bw.Flush() == nil {
				ps.s.setRelaying(ps.raw)
				ps.s.relay(ctx, ps.conn, pending(ps.br), handoff.conn, pending(handoff.br))
			} else {
				handoff.conn.Close()
			}
			return
		}
		if done {
			return
		}
	}
}

func (ps *pop3Session) err(msg string) { writef(ps.bw, "-ERR %s\r\n", msg) }

// protocolError answers -ERR and reports whether the session may go on.
func (ps *pop3Session) protocolError(msg string) bool {
	ps.s.m.protocolErrors.Add(1)
	ps.errors++
	ps.err(msg)
	if ps.errors >= ps.s.cfg.Limits.MaxBadCommands {
		ps.err("Too many protocol errors")
		ps.bw.Flush()
		return false
	}
	return true
}

func (ps *pop3Session) dispatch(ctx context.Context, line string) (bool, *pop3Backend) {
	verb, arg, _ := strings.Cut(line, " ")
	verb = strings.ToUpper(verb)
	if verb != "PASS" && verb != "USER" {
		ps.user = "" // anything between USER and PASS cancels the pair
	}
	switch verb {
	case "CAPA":
		ps.capa()
	case "QUIT":
		writef(ps.bw, "+OK Bye\r\n")
		ps.bw.Flush()
		return true, nil
	case "NOOP":
		writef(ps.bw, "+OK\r\n")
	case "STLS":
		return ps.stls(ctx, arg), nil
	case "USER":
		if ps.loginDisabled() {
			ps.err("[AUTH] Plaintext authentication is disabled before STLS")
			return false, nil
		}
		if arg == "" || strings.ContainsAny(arg, " \x00") {
			return !ps.protocolError("USER needs one argument"), nil
		}
		ps.user = arg
		writef(ps.bw, "+OK Send password\r\n")
	case "PASS":
		if ps.user == "" {
			return !ps.protocolError("USER first"), nil
		}
		user := ps.user
		ps.user = ""
		return ps.finishLogin(ctx, Credentials{AuthcID: user, Password: arg})
	case "AUTH":
		return ps.auth(ctx, arg)
	case "":
		return !ps.protocolError("Empty command"), nil
	default:
		return !ps.protocolError("Unknown command or not valid before login"), nil
	}
	return false, nil
}

func (ps *pop3Session) loginDisabled() bool { return ps.s.cfg.TLS.Required && !ps.tls }

func (ps *pop3Session) capa() {
	writef(ps.bw, "+OK Capability list follows\r\n")
	if !ps.loginDisabled() {
		writef(ps.bw, "USER\r\nSASL PLAIN\r\n")
	}
	if ps.s.tlsConf != nil && !ps.tls {
		writef(ps.bw, "STLS\r\n")
	}
	writef(ps.bw, "RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nIMPLEMENTATION Rookery\r\n.\r\n")
}

func (ps *pop3Session) stls(ctx context.Context, arg string) bool {
	switch {
	case arg != "":
		return !ps.protocolError("STLS takes no argument")
	case ps.s.tlsConf == nil || ps.tls:
		return !ps.protocolError("STLS not available")
	case ps.br.Buffered() > 0:
		ps.br.Discard(ps.br.Buffered())
		return !ps.protocolError("STLS must be the last command sent before the handshake")
	}
	writef(ps.bw, "+OK Begin TLS negotiation\r\n")
	if ps.bw.Flush() != nil {
		return true
	}
	tc, err := ps.s.serverHandshake(ctx, ps.conn)
	if err != nil {
		return true
	}
	ps.tls = true
	ps.reset(tc)
	return false
}

func (ps *pop3Session) auth(ctx context.Context, arg string) (bool, *pop3Backend) {
	if arg == "" {
		writef(ps.bw, "+OK\r\nPLAIN\r\n.\r\n")
		return false, nil
	}
	mech, ir, hasIR := strings.Cut(arg, " ")
	if !strings.EqualFold(mech, "PLAIN") {
		ps.err("Unsupported authentication mechanism")
		return false, nil
	}
	if ps.loginDisabled() {
		ps.err("[AUTH] Authentication is disabled before STLS")
		return false, nil
	}
	if !hasIR {
		writef(ps.bw, "+ \r\n")
		if ps.bw.Flush() != nil {
			return true, nil
		}
		line, err := ps.r.ReadLine()
		if err != nil {
			var we *imapwire.Error
			if errors.As(err, &we) && !we.Fatal {
				return !ps.protocolError("SASL response too long"), nil
			}
			return true, nil
		}
		if string(line) == "*" {
			ps.err("Authentication cancelled")
			return false, nil
		}
		ir = string(line)
	} else if ir == "=" {
		ir = ""
	}
	creds, err := decodePlain(ir)
	if err != nil {
		return !ps.protocolError("Invalid SASL PLAIN response"), nil
	}
	return ps.finishLogin(ctx, creds)
}

func (ps *pop3Session) finishLogin(ctx context.Context, creds Credentials) (bool, *pop3Backend) {
	ps.conn.SetDeadline(time.Time{})
	a := ps.s.newAttempt(ProtoPOP3, ps.ip, creds)
	r, lerr := a.resolve(ctx)
	var b *pop3Backend
	if lerr == nil {
		var err error
		if b, err = ps.s.pop3BackendLogin(ctx, r.addr, r.creds); err != nil {
			lerr = a.backendFailed(ctx, r, err)
		}
	}
	if lerr != nil {
		ps.err(pop3Code(lerr.kind) + lerr.text)
		return false, nil
	}
	a.succeeded(r)
	writef(ps.bw, "%s\r\n", b.okLine)
	return false, b
}

func pop3Code(k failKind) string {
	switch k {
	case failAuth, failAuthz:
		return "[AUTH] "
	default:
		return "[SYS/TEMP] "
	}
}

// pop3Backend is a logged-in connection to a backend's POP3 service.
type pop3Backend struct {
	conn   net.Conn
	br     *bufio.Reader
	okLine string // the backend's +OK answer to the login, shown to the client
}

func (s *Server) pop3BackendLogin(ctx context.Context, addr string, creds backendCreds) (*pop3Backend, error) {
	b := &pop3Backend{}
	err := s.loginBackend(ctx, addr, func(ctx context.Context, conn net.Conn) error {
		b.conn, b.br = conn, bufio.NewReaderSize(conn, 16<<10)
		return b.login(ctx, s, addr, creds)
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (b *pop3Backend) login(ctx context.Context, s *Server, addr string, c backendCreds) error {
	greet, err := b.readLine()
	if err != nil {
		return fmt.Errorf("backend %s greeting: %w", addr, err)
	}
	if !strings.HasPrefix(greet, "+OK") {
		return fmt.Errorf("backend %s greeting: %q", addr, truncate(greet))
	}
	if s.cfg.Backend.TLS == BackendTLSStartTLS {
		if line, err := b.cmd("STLS"); err != nil || !strings.HasPrefix(line, "+OK") {
			return fmt.Errorf("backend STLS: %q %v", truncate(line), err)
		}
		tc, err := s.clientTLS(ctx, b.conn, addr)
		if err != nil {
			return err
		}
		b.conn, b.br = tc, bufio.NewReaderSize(tc, 16<<10)
	}
	var line string
	if c.authzid == "" && s.cfg.Backend.Auth == AuthPassthrough {
		// USER/PASS works with every POP3 server.
		if strings.ContainsAny(c.authcid+c.password, "\r\n") {
			return &refusal{text: "credentials cannot be sent with USER/PASS"}
		}
		if line, err = b.cmd("USER " + c.authcid); err == nil && strings.HasPrefix(line, "+OK") {
			line, err = b.cmd("PASS " + c.password)
		}
	} else {
		line, err = b.cmd("AUTH PLAIN " + encodePlain(c.authzid, c.authcid, c.password))
	}
	if err != nil {
		return fmt.Errorf("backend login: %w", err)
	}
	if !strings.HasPrefix(line, "+OK") {
		text := strings.TrimPrefix(line, "-ERR ")
		code := responseCode(text)
		return &refusal{temporary: code == "SYS/TEMP" || code == "IN-USE" || code == "LOGIN-DELAY", text: truncate(text), code: code}
	}
	b.okLine = line
	return nil
}

func (b *pop3Backend) cmd(line string) (string, error) {
	if _, err := b.conn.Write([]byte(line + "\r\n")); err != nil {
		return "", err
	}
	return b.readLine()
}

func (b *pop3Backend) readLine() (string, error) {
	line, err := b.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errors.New("backend line too long")
	}
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}
