package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/rookery/rookery/internal/imapwire"
)

// imapBackend is a logged-in connection to a backend's IMAP service.
//
// go-imap's imapclient is not used here on purpose: it runs its own reader
// goroutine over the connection, so the connection could not be handed to
// the byte relay afterwards without losing whatever that goroutine had
// buffered. The backend side before the relay is four commands long.
type imapBackend struct {
	conn net.Conn
	br   *bufio.Reader
	caps []string // capabilities after login
	tags int
}

// maxBackendLine bounds lines read from a backend during login.
const maxBackendLine = 64 << 10

// imapBackendLogin connects to addr and logs in with creds.
func (s *Server) imapBackendLogin(ctx context.Context, addr string, creds backendCreds) (*imapBackend, error) {
	b := &imapBackend{}
	err := s.loginBackend(ctx, addr, func(ctx context.Context, conn net.Conn) error {
		b.conn, b.br = conn, bufio.NewReaderSize(conn, 16<<10)
		return b.login(ctx, s, addr, creds)
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (b *imapBackend) login(ctx context.Context, s *Server, addr string, creds backendCreds) error {
	greet, err := b.readLine()
	if err != nil {
		return fmt.Errorf("backend %s greeting: %w", addr, err)
	}
	if !strings.HasPrefix(greet, "* OK") {
		return fmt.Errorf("backend %s greeting: %q", addr, truncate(greet))
	}
	caps := parseCapCode(greet)
	if s.cfg.Backend.TLS == BackendTLSStartTLS {
		if err := b.startTLS(ctx, s, addr); err != nil {
			return err
		}
		caps = nil
	}
	if caps == nil {
		if caps, err = b.capability(); err != nil {
			return err
		}
	}
	post, err := b.authenticate(caps, creds, s.cfg.Backend.Auth == AuthPassthrough)
	if err != nil {
		return err
	}
	if post == nil {
		if post, err = b.capability(); err != nil {
			return err
		}
	}
	b.caps = post
	return nil
}

func (b *imapBackend) nextTag() string {
	b.tags++
	return "G" + strconv.Itoa(b.tags)
}

func (b *imapBackend) send(line string) error {
	_, err := b.conn.Write([]byte(line + "\r\n"))
	return err
}

// readLine reads one response line; a line ending in a literal is read
// through its literal (whose bytes are kept) to the end.
func (b *imapBackend) readLine() (string, error) {
	var out strings.Builder
	for {
		line, err := b.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", errors.New("backend line too long")
		}
		if err != nil {
			return "", err
		}
		line = bytes.TrimRight(line, "\r\n")
		out.Write(line)
		if out.Len() > maxBackendLine {
			return "", errors.New("backend response too long")
		}
		n, _, ok := imapwire.TrailingLiteral(line)
		if !ok {
			return out.String(), nil
		}
		if n > uint64(maxBackendLine-out.Len()) {
			return "", errors.New("backend literal too long")
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(b.br, buf); err != nil {
			return "", err
		}
		out.Write(buf)
	}
}

// command sends a command and reads to its tagged response, collecting
// capabilities from untagged CAPABILITY lines and a [CAPABILITY] code.
func (b *imapBackend) command(line string) (status, text string, caps []string, err error) {
	tag := b.nextTag()
	if err := b.send(tag + " " + line); err != nil {
		return "", "", nil, err
	}
	return b.await(tag)
}

func (b *imapBackend) await(tag string) (status, text string, caps []string, err error) {
	for {
		resp, err := b.readLine()
		if err != nil {
			return "", "", nil, err
		}
		if c, ok := strings.CutPrefix(resp, "* CAPABILITY "); ok {
			caps = strings.Fields(c)
			continue
		}
		if strings.HasPrefix(resp, "* BYE") {
			return "", "", nil, fmt.Errorf("backend closed: %q", truncate(resp))
		}
		rest, ok := strings.CutPrefix(resp, tag+" ")
		if !ok {
			continue
		}
		status, text, _ = strings.Cut(rest, " ")
		status = strings.ToUpper(status)
		if c := parseCapCode(rest); c != nil {
			caps = c
		}
		return status, text, caps, nil
	}
}

func (b *imapBackend) capability() ([]string, error) {
	st, text, caps, err := b.command("CAPABILITY")
	if err != nil {
		return nil, fmt.Errorf("backend CAPABILITY: %w", err)
	}
	if st != "OK" || caps == nil {
		return nil, fmt.Errorf("backend CAPABILITY: %s %s", st, truncate(text))
	}
	return caps, nil
}

func (b *imapBackend) startTLS(ctx context.Context, s *Server, addr string) error {
	st, text, _, err := b.command("STARTTLS")
	if err != nil || st != "OK" {
		return fmt.Errorf("backend STARTTLS: %s %s %v", st, truncate(text), err)
	}
	if b.br.Buffered() > 0 {
		return errors.New("backend sent data after STARTTLS OK")
	}
	tc, err := s.clientTLS(ctx, b.conn, addr)
	if err != nil {
		return err
	}
	b.conn, b.br = tc, bufio.NewReaderSize(tc, 16<<10)
	return nil
}

// authenticate logs in. AUTHENTICATE PLAIN is preferred because it is the
// only way to send an authorization id; LOGIN is the passthrough fallback
// for backends that offer no PLAIN. It returns the post-login
// capabilities if the backend sent them.
func (b *imapBackend) authenticate(caps []string, c backendCreds, passthrough bool) ([]string, error) {
	var st, text string
	var post []string
	var err error
	switch {
	case hasCap(caps, "AUTH=PLAIN"):
		ir := encodePlain(c.authzid, c.authcid, c.password)
		if hasCap(caps, "SASL-IR") {
			st, text, post, err = b.command("AUTHENTICATE PLAIN " + ir)
		} else {
			st, text, post, err = b.authenticateCont(ir)
		}
	case passthrough && c.authzid == "" && !hasCap(caps, "LOGINDISABLED"):
		if strings.ContainsAny(c.authcid+c.password, "\r\n\x00") {
			return nil, &refusal{text: "credentials cannot be sent with LOGIN"}
		}
		st, text, post, err = b.command("LOGIN " + imapwire.Quote(c.authcid) + " " + imapwire.Quote(c.password))
	default:
		return nil, errors.New("backend offers no usable login (need AUTH=PLAIN)")
	}
	if err != nil {
		return nil, fmt.Errorf("backend login: %w", err)
	}
	switch st {
	case "OK":
		return post, nil
	case "NO":
		code := responseCode(text)
		return nil, &refusal{temporary: code == "UNAVAILABLE" || code == "INUSE", text: truncate(text), code: code}
	default:
		return nil, fmt.Errorf("backend login: %s %s", st, truncate(text))
	}
}

func (b *imapBackend) authenticateCont(ir string) (string, string, []string, error) {
	tag := b.nextTag()
	if err := b.send(tag + " AUTHENTICATE PLAIN"); err != nil {
		return "", "", nil, err
	}
	line, err := b.readLine()
	if err != nil {
		return "", "", nil, err
	}
	if !strings.HasPrefix(line, "+") {
		rest, _ := strings.CutPrefix(line, tag+" ")
		st, text, _ := strings.Cut(rest, " ")
		return strings.ToUpper(st), text, nil, nil
	}
	if err := b.send(ir); err != nil {
		return "", "", nil, err
	}
	return b.await(tag)
}

// parseCapCode returns the capabilities in an "[CAPABILITY ...]" response
// code anywhere in a status line, or nil.
func parseCapCode(line string) []string {
	i := strings.Index(strings.ToUpper(line), "[CAPABILITY ")
	if i < 0 {
		return nil
	}
	rest := line[i+len("[CAPABILITY "):]
	j := strings.IndexByte(rest, ']')
	if j < 0 {
		return nil
	}
	return strings.Fields(rest[:j])
}

func hasCap(caps []string, want string) bool {
	for _, c := range caps {
		if strings.EqualFold(c, want) {
			return true
		}
	}
	return false
}

// filterCaps removes capabilities that start with any hidden prefix.
func filterCaps(caps, hidden []string) []string {
	out := make([]string, 0, len(caps))
next:
	for _, c := range caps {
		for _, h := range hidden {
			if len(c) >= len(h) && strings.EqualFold(c[:len(h)], h) {
				continue next
			}
		}
		out = append(out, c)
	}
	return out
}
