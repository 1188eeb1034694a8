package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// The backend side of LMTP: connecting to a backend's lmtpd, streaming one
// message to several backends, and carrying their replies to the client.

// dialLMTP connects to a backend's LMTP service and authenticates as the
// proxy identity (Cyrus lmtpd over TCP lets only admins in).
func (s *Server) dialLMTP(ctx context.Context, server string) (*smtp.Client, error) {
	addr := s.serviceAddr(server, ProtoLMTP)
	if addr == "" {
		return nil, fmt.Errorf("no LMTP address for backend %q", server)
	}
	var c *smtp.Client
	err := s.loginBackend(ctx, addr, func(_ context.Context, conn net.Conn) (err error) {
		c, err = s.lmtpHandshake(conn, addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (s *Server) lmtpHandshake(conn net.Conn, addr string) (*smtp.Client, error) {
	if s.cfg.Backend.TLS == BackendTLSStartTLS {
		tc, err := s.lmtpStartTLS(conn, addr)
		if err != nil {
			return nil, err
		}
		conn = tc
	}
	c := smtp.NewClientLMTP(conn)
	c.CommandTimeout = s.cfg.LMTP.Timeout.Std()
	c.SubmissionTimeout = s.cfg.LMTP.Timeout.Std()
	if err := c.Hello(s.cfg.Hostname); err != nil {
		return nil, fmt.Errorf("LMTP LHLO: %w", err)
	}
	// Cyrus lmtpd over TCP requires AUTH and advertises it; a backend that
	// does not offer AUTH trusts the connection.
	if ok, _ := c.Extension("AUTH"); ok && s.cfg.Backend.AuthName != "" {
		if err := c.Auth(sasl.NewPlainClient("", s.cfg.Backend.AuthName, s.cfg.Backend.Password)); err != nil {
			return nil, fmt.Errorf("LMTP AUTH as %s: %w", s.cfg.Backend.AuthName, err)
		}
	}
	return c, nil
}

// lmtpStartTLS runs greeting, LHLO and STARTTLS by hand (go-smtp's client
// cannot start TLS in LMTP mode) and returns the TLS connection with a
// synthetic greeting in front, so go-smtp's client can start over on it
// as RFC 3207 requires (LHLO again after the handshake).
func (s *Server) lmtpStartTLS(conn net.Conn, addr string) (net.Conn, error) {
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("LMTP greeting: %w", err)
	}
	for _, cmd := range []struct {
		line string
		code int
	}{{"LHLO " + s.cfg.Hostname, 250}, {"STARTTLS", 220}} {
		if err := tp.PrintfLine("%s", cmd.line); err != nil {
			return nil, err
		}
		if _, _, err := tp.ReadResponse(cmd.code); err != nil {
			return nil, fmt.Errorf("LMTP %s: %w", cmd.line, err)
		}
	}
	tc, err := s.clientTLS(s.ctx, conn, addr)
	if err != nil {
		return nil, err
	}
	return &greetedConn{Conn: tc, r: io.MultiReader(strings.NewReader("220 TLS established\r\n"), tc)}, nil
}

// greetedConn replays a greeting before the connection's own bytes.
type greetedConn struct {
	net.Conn
	r io.Reader
}

func (c *greetedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// clientDataError is the reply for a message the client failed to send
// completely: go-smtp's own error when it has one (size, line length),
// otherwise a temporary failure.
func clientDataError(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Error reading message data"}
}

// backendReply prepares a backend's refusal for go-smtp's server. Cyrus
// puts the enhanced code on the last line of a multi-line reply
// ("550-Mailbox unknown..." ... "550 5.1.1 User unknown"); go-smtp's
// client only looks for it on the first line and its server writes it on
// the last, adding "5.0.0" when it has none. Moving the code out of the
// last line's text makes the relayed reply byte-identical to Cyrus's.
func backendReply(se *smtp.SMTPError) *smtp.SMTPError {
	if se.EnhancedCode != (smtp.EnhancedCode{}) {
		return se
	}
	lines := strings.Split(se.Message, "\n")
	last := lines[len(lines)-1]
	code, rest, ok := strings.Cut(last, " ")
	ec, valid := parseEnhanced(code)
	if !ok || !valid || ec[0] != se.Code/100 {
		return se
	}
	lines[len(lines)-1] = rest
	return &smtp.SMTPError{Code: se.Code, EnhancedCode: ec, Message: strings.Join(lines, "\n")}
}

// successReply carries a backend's 2xx text to the client. go-smtp writes
// a status from an *SMTPError's code and text even when the code is 250,
// which is how the backend's own success text (with its SESSIONID) gets
// through.
func successReply(text string) error {
	se := &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: text}
	if code, rest, ok := strings.Cut(text, " "); ok {
		if ec, ok := parseEnhanced(code); ok && ec[0] == 2 {
			se.EnhancedCode, se.Message = ec, rest
		}
	}
	return se
}

func parseEnhanced(s string) (smtp.EnhancedCode, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return smtp.EnhancedCode{}, false
	}
	var ec smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 {
			return smtp.EnhancedCode{}, false
		}
		ec[i] = n
	}
	return ec, true
}

// dataSink is one backend's DATA stream during fan-out.
type dataSink struct {
	b   *lmtpBackend
	w   *smtp.DataCommand
	err error
}

// fanOut copies r to every sink. A sink whose write fails is dropped and
// remembers the error; the others continue. The returned error is the
// reader's (the client's) only.
func fanOut(r io.Reader, sinks []*dataSink) error {
	buf := make([]byte, 64<<10)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			for _, s := range sinks {
				if s.err == nil {
					_, s.err = s.w.Write(buf[:n])
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// slogPrinter adapts slog to go-smtp's Logger.
type slogPrinter struct {
	l interface{ Warn(string, ...any) }
}

func (p slogPrinter) Printf(format string, v ...any) { p.l.Warn(fmt.Sprintf(format, v...)) }
func (p slogPrinter) Println(v ...any)               { p.l.Warn(strings.TrimSpace(fmt.Sprintln(v...))) }
