package gateway

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/rookery/rookery/internal/imapwire"
)

// imapSession is one client connection in the pre-login state. After a
// successful login it turns into a byte relay and the gateway stops
// parsing: everything the backend supports (IDLE, COMPRESS, literals of
// any size) then works without the gateway knowing about it.
type imapSession struct {
	s      *Server
	raw    net.Conn // the accepted connection, under any TLS
	conn   net.Conn
	br     *bufio.Reader
	r      *imapwire.Reader
	bw     *bufio.Writer
	ip     string
	tls    bool
	errors int
	// murder is set by a successful login in murder mode: the session
	// then continues in imapserver (imap_handoff.go).
	murder *imapMurderSession
}

func (s *Server) serveIMAP(ctx context.Context, conn net.Conn, implicitTLS bool) {
	s.m.connIMAP.Add(1)
	raw := conn
	if implicitTLS {
		tc, err := s.serverHandshake(ctx, conn)
		if err != nil {
			return
		}
		conn = tc
	}
	ss := &imapSession{s: s, raw: raw, conn: conn, ip: remoteIP(conn.RemoteAddr()), tls: implicitTLS}
	ss.reset(conn)
	ss.run(ctx)
}

// reset (re)binds the reader and writer to conn, after accept or STARTTLS.
func (ss *imapSession) reset(conn net.Conn) {
	lim := ss.s.cfg.Limits
	ss.conn = conn
	ss.bw = bufio.NewWriterSize(conn, 4096)
	ss.br = bufio.NewReaderSize(conn, 4096)
	ss.r = newIMAPReader(ss.br, lim.MaxLine, lim.MaxLiteral, func() error {
		ss.bw.WriteString("+ Ready for literal data\r\n")
		return ss.bw.Flush()
	})
}

// newIMAPReader returns a reader of IMAP commands from a stranger: a line
// holds at most maxLine bytes (a longer one is skipped and answered BAD, up
// to 16 times that), a literal maxLiteral, a command two of each. cont
// sends the continuation request a synchronizing literal waits for.
func newIMAPReader(br *bufio.Reader, maxLine, maxLiteral int, cont func() error) *imapwire.Reader {
	r := imapwire.NewReader(br, imapwire.Limits{
		MaxLineLength:  maxLine,
		MaxLiteralSize: maxLiteral,
		MaxCommandSize: 2*maxLine + 2*maxLiteral,
		MaxDiscard:     16 * maxLine,
	})
	r.SetSyntax(imapwire.IMAP)
	r.SetContinuation(cont)
	return r
}

// readIMAPCommand reads one command and upper-cases its name. A line
// without a command name (empty, or a tag alone) is answered with an
// untagged BAD: it does not parse as "tag SP command".
func readIMAPCommand(r *imapwire.Reader) (*imapwire.Command, error) {
	cmd, err := r.ReadCommand()
	if err != nil {
		return nil, err
	}
	if cmd.Name == "" {
		return nil, &imapwire.Error{Text: "Missing or invalid tag"}
	}
	cmd.Name = strings.ToUpper(cmd.Name)
	return cmd, nil
}

func (ss *imapSession) run(ctx context.Context) {
	defer ss.conn.Close()
	ss.writef("* OK [CAPABILITY %s] %s Rookery IMAP gateway ready\r\n", ss.capabilities(), ss.s.cfg.Hostname)
	for ctx.Err() == nil {
		if ss.bw.Flush() != nil {
			return
		}
		ss.conn.SetDeadline(time.Now().Add(ss.s.cfg.Limits.PreLoginTimeout.Std()))
		cmd, err := readIMAPCommand(ss.r)
		if err != nil {
			var pe *imapwire.Error
			if !errors.As(err, &pe) {
				if isTimeout(err) {
					ss.bye("Autologout; idle for too long")
				}
				return // EOF or a broken connection
			}
			if !ss.protocolError(pe) {
				return
			}
			continue
		}
		done, handoff := ss.dispatch(ctx, cmd)
		if handoff != nil {
			ss.relay(ctx, handoff)
			return
		}
		if ss.murder != nil {
			// Logged in before the client hears so: a Shutdown between
			// the two must drain this session, not close it as pre-login.
			ss.s.setRelaying(ss.raw)
			if ss.bw.Flush() != nil {
				ss.murder.Close()
				return
			}
			// imapserver closes the session when it ends (so does serve
			// when the hand-off fails).
			ss.s.handoff.serve(ctx, ss.conn, pending(ss.br), ss.murder)
			return
		}
		if done {
			return
		}
	}
	ss.bye("Server shutting down")
}

// protocolError answers BAD and reports whether the session may go on.
func (ss *imapSession) protocolError(pe *imapwire.Error) bool {
	ss.s.m.protocolErrors.Add(1)
	ss.errors++
	tag := pe.Tag
	if tag == "" {
		tag = "*"
	}
	code := ""
	if pe.TooBig {
		code = "[TOOBIG] "
	}
	ss.writef("%s BAD %s%s\r\n", tag, code, pe.Text)
	switch {
	case pe.Fatal:
		ss.bye("Protocol error, closing connection")
		return false
	case ss.errors >= ss.s.cfg.Limits.MaxBadCommands:
		ss.bye("Too many protocol errors")
		return false
	}
	return true
}

func (ss *imapSession) bad(cmd *imapwire.Command, msg string) {
	ss.protocolError(&imapwire.Error{Tag: cmd.Tag, Text: msg})
}

// dispatch runs one pre-login command. It returns done when the
// connection must close, or a logged-in backend to relay to.
func (ss *imapSession) dispatch(ctx context.Context, cmd *imapwire.Command) (done bool, handoff *imapBackend) {
	switch cmd.Name {
	case "CAPABILITY":
		if len(cmd.Args) != 0 {
			ss.bad(cmd, "Unexpected arguments")
			return ss.errors >= ss.s.cfg.Limits.MaxBadCommands, nil
		}
		ss.writef("* CAPABILITY %s\r\n%s OK Completed\r\n", ss.capabilities(), cmd.Tag)
	case "NOOP":
		ss.writef("%s OK Completed\r\n", cmd.Tag)
	case "LOGOUT":
		ss.writef("* BYE Logging out\r\n%s OK Completed\r\n", cmd.Tag)
		ss.bw.Flush()
		return true, nil
	case "ID":
		ss.writef("* ID (\"name\" \"Rookery gateway\")\r\n%s OK Completed\r\n", cmd.Tag)
	case "STARTTLS":
		return ss.startTLS(ctx, cmd), nil
	case "LOGIN":
		return ss.login(ctx, cmd)
	case "AUTHENTICATE":
		return ss.authenticate(ctx, cmd)
	default:
		if needsLogin(cmd.Name) {
			ss.bad(cmd, "Please login first")
		} else {
			ss.bad(cmd, "Unrecognized command")
		}
	}
	return ss.errors >= ss.s.cfg.Limits.MaxBadCommands, nil
}

// needsLogin reports whether name is a valid IMAP command that needs a
// login; those get "Please login first" rather than "Unrecognized command".
func needsLogin(name string) bool {
	switch name {
	case "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE",
		"LIST", "LSUB", "STATUS", "APPEND", "CHECK", "CLOSE", "EXPUNGE", "SEARCH", "FETCH",
		"STORE", "COPY", "UID", "IDLE", "ENABLE", "NAMESPACE", "GETACL", "SETACL", "MOVE", "UNSELECT":
		return true
	}
	return false
}

func (ss *imapSession) capabilities() string {
	caps := []string{"IMAP4rev1"}
	if ss.s.tlsConf != nil && !ss.tls {
		caps = append(caps, "STARTTLS")
	}
	if ss.loginDisabled() {
		caps = append(caps, "LOGINDISABLED")
	} else {
		caps = append(caps, "AUTH=PLAIN", "SASL-IR")
	}
	caps = append(caps, "ID")
	return strings.Join(caps, " ")
}

func (ss *imapSession) loginDisabled() bool { return ss.s.cfg.TLS.Required && !ss.tls }

func (ss *imapSession) startTLS(ctx context.Context, cmd *imapwire.Command) bool {
	switch {
	case len(cmd.Args) != 0:
		ss.bad(cmd, "Unexpected arguments")
	case ss.s.tlsConf == nil || ss.tls:
		ss.bad(cmd, "STARTTLS not available")
	case ss.br.Buffered() > 0:
		// Anything sent after STARTTLS in the same flight would be read
		// as if it came through TLS (the CVE-2011-0411 injection): drop
		// it and refuse.
		ss.br.Discard(ss.br.Buffered())
		ss.bad(cmd, "STARTTLS must be the last command sent before the handshake")
	default:
		ss.writef("%s OK Begin TLS negotiation now\r\n", cmd.Tag)
		if ss.bw.Flush() != nil {
			return true
		}
		tc, err := ss.s.serverHandshake(ctx, ss.conn)
		if err != nil {
			return true // never fall back to plaintext after a failed handshake
		}
		ss.tls = true
		ss.reset(tc)
		return false
	}
	return ss.errors >= ss.s.cfg.Limits.MaxBadCommands
}

func (ss *imapSession) login(ctx context.Context, cmd *imapwire.Command) (bool, *imapBackend) {
	if len(cmd.Args) != 2 || !cmd.Args[0].IsAString() || !cmd.Args[1].IsAString() {
		ss.bad(cmd, "LOGIN needs a user name and a password")
		return ss.errors >= ss.s.cfg.Limits.MaxBadCommands, nil
	}
	if ss.loginDisabled() {
		ss.writef("%s NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS\r\n", cmd.Tag)
		return false, nil
	}
	return ss.finishLogin(ctx, cmd, Credentials{AuthcID: cmd.Args[0].Value, Password: cmd.Args[1].Value})
}

func (ss *imapSession) authenticate(ctx context.Context, cmd *imapwire.Command) (bool, *imapBackend) {
	if len(cmd.Args) < 1 || len(cmd.Args) > 2 || cmd.Args[0].Kind != imapwire.Atom || (len(cmd.Args) == 2 && cmd.Args[1].Kind != imapwire.Atom) {
		ss.bad(cmd, "AUTHENTICATE needs a mechanism and at most one initial response")
		return ss.errors >= ss.s.cfg.Limits.MaxBadCommands, nil
	}
	if !strings.EqualFold(cmd.Args[0].Value, "PLAIN") {
		ss.writef("%s NO Unsupported authentication mechanism\r\n", cmd.Tag)
		return false, nil
	}
	if ss.loginDisabled() {
		ss.writef("%s NO [PRIVACYREQUIRED] Authentication is disabled before STARTTLS\r\n", cmd.Tag)
		return false, nil
	}
	var resp string
	if len(cmd.Args) == 2 {
		resp = cmd.Args[1].Value
		if resp == "=" {
			resp = ""
		}
	} else {
		ss.writef("+ \r\n")
		if ss.bw.Flush() != nil {
			return true, nil
		}
		line, err := ss.r.ReadLine()
		if err != nil {
			var we *imapwire.Error
			if errors.As(err, &we) && !we.Fatal {
				return !ss.protocolError(&imapwire.Error{Tag: cmd.Tag, Text: "SASL response too long", TooBig: true}), nil
			}
			return true, nil
		}
		if string(line) == "*" {
			ss.writef("%s BAD Authentication cancelled\r\n", cmd.Tag)
			return false, nil
		}
		resp = string(line)
	}
	creds, err := decodePlain(resp)
	if err != nil {
		ss.bad(cmd, "Invalid SASL PLAIN response")
		return ss.errors >= ss.s.cfg.Limits.MaxBadCommands, nil
	}
	return ss.finishLogin(ctx, cmd, creds)
}

// finishLogin routes the user, logs in to the backend and, on success,
// answers OK with the backend's capabilities and returns the backend.
func (ss *imapSession) finishLogin(ctx context.Context, cmd *imapwire.Command, creds Credentials) (bool, *imapBackend) {
	// The client may wait as long as the backend takes; the pre-login
	// deadline must not cut a slow but healthy login short.
	ss.conn.SetDeadline(time.Time{})
	a := ss.s.newAttempt(ProtoIMAP, ss.ip, creds)
	r, lerr := a.resolve(ctx)
	if ss.s.handoff != nil {
		ss.murderLogin(ctx, cmd, a, r, lerr)
		return false, nil
	}
	var b *imapBackend
	if lerr == nil {
		var err error
		if b, err = ss.s.imapBackendLogin(ctx, r.addr, r.creds); err != nil {
			lerr = a.backendFailed(ctx, r, err)
		}
	}
	if lerr != nil {
		ss.writef("%s NO [%s] %s\r\n", cmd.Tag, imapCode(lerr.kind), lerr.text)
		return false, nil
	}
	a.succeeded(r)
	caps := filterCaps(b.caps, ss.s.cfg.IMAP.HideCapabilities)
	ss.writef("%s OK [CAPABILITY %s] Logged in\r\n", cmd.Tag, strings.Join(caps, " "))
	return false, b
}

// murderLogin logs in to the user's INBOX backend with imapclient, the
// first of the murder session's backend connections.
func (ss *imapSession) murderLogin(ctx context.Context, cmd *imapwire.Command, a *attempt, r route, lerr *loginError) {
	var ms *imapMurderSession
	if lerr == nil {
		ms = ss.s.newMurderSession(ss.s.ctx, r, nil)
		c, err := ss.s.dialIMAPClient(ctx, r.addr, r.creds, ms.handler(r.server))
		if err != nil {
			lerr = a.backendFailed(ctx, r, err)
		} else {
			ms.backends[r.server] = c
		}
	}
	if lerr != nil {
		ss.writef("%s NO [%s] %s\r\n", cmd.Tag, imapCode(lerr.kind), lerr.text)
		return
	}
	a.succeeded(r)
	ss.writef("%s OK [CAPABILITY %s] Logged in\r\n", cmd.Tag, murderCapsAll)
	ss.murder = ms
}

func imapCode(k failKind) string {
	switch k {
	case failAuth:
		return "AUTHENTICATIONFAILED"
	case failAuthz:
		return "AUTHORIZATIONFAILED"
	default:
		return "UNAVAILABLE"
	}
}

// relay hands the session over to the byte relay.
func (ss *imapSession) relay(ctx context.Context, b *imapBackend) {
	ss.s.setRelaying(ss.raw) // before the client hears it is logged in, as above
	if ss.bw.Flush() != nil {
		b.conn.Close()
		return
	}
	ss.s.relay(ctx, ss.conn, pending(ss.br), b.conn, pending(b.br))
}

func (ss *imapSession) writef(format string, args ...any) {
	writef(ss.bw, format, args...)
}

func (ss *imapSession) bye(msg string) {
	ss.conn.SetWriteDeadline(time.Now().Add(time.Second)) // the read deadline may have expired both
	ss.writef("* BYE %s\r\n", msg)
	ss.bw.Flush()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
