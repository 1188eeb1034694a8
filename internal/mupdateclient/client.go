// Package mupdateclient is a small MUPDATE (RFC 3656) client that speaks the
// subset real Cyrus 3.6 components use: the banner, AUTHENTICATE "PLAIN" with
// a LITERAL+ initial response, RESERVE, ACTIVATE, DEACTIVATE, DELETE, FIND,
// LIST, NOOP, UPDATE streaming and LOGOUT, with every argument sent as a
// LITERAL+ string.
//
// It exists for load tools and tests; it is written independently of the
// server package so that a bug in one cannot hide a bug in the other.
package mupdateclient

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config holds the connection settings.
type Config struct {
	// User and Password are the SASL PLAIN credentials. An empty User means
	// Dial does not authenticate.
	User     string
	Password string
	// MaxLiteral bounds a single literal the server may send.
	MaxLiteral int
	// MaxLine bounds a single physical response line.
	MaxLine int
}

// DefaultConfig returns the Cyrus test murder's credentials and generous
// limits (Cyrus itself accepts SASL lines of about 21 KB).
func DefaultConfig() Config {
	return Config{
		User:       "mupdate",
		Password:   "mupdatepw",
		MaxLiteral: 1 << 20,
		MaxLine:    64 << 10,
	}
}

// Entry is one mailbox as MUPDATE carries it.
type Entry struct {
	Name     string
	Location string // server!partition
	ACL      string // id TAB rights TAB ..., empty for a reservation
	Reserved bool
}

// StatusError is a NO or BAD answer to a command.
type StatusError struct {
	Command string
	Status  string // NO or BAD
	Text    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("mupdate: %s: %s %q", e.Command, e.Status, e.Text)
}

// Client is one MUPDATE connection. Its methods must not be called
// concurrently, with one exception: after Update, one goroutine may call
// Next while another calls SendNoop.
type Client struct {
	conn  net.Conn
	rd    respReader
	wmu   sync.Mutex // serializes writes (SendNoop vs. the rest)
	tagN  int
	noopN int

	banner []string
	mechs  []string

	errMu sync.Mutex
	err   error // sticky: set once the stream is out of sync
}

// Dial connects to addr, reads the banner and, when cfg.User is set,
// authenticates with PLAIN.
func Dial(ctx context.Context, addr string, cfg Config) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mupdate: dial %s: %w", addr, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c := NewClient(conn, cfg)
	if err := c.readBanner(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	if cfg.User != "" {
		if err := c.Authenticate(ctx, cfg.User, cfg.Password); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return c, nil
}

// NewClient wraps an established connection. The caller must then read the
// banner with ReadBanner (Dial does both).
func NewClient(conn net.Conn, cfg Config) *Client {
	def := DefaultConfig()
	if cfg.MaxLiteral <= 0 {
		cfg.MaxLiteral = def.MaxLiteral
	}
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = def.MaxLine
	}
	return &Client{
		conn: conn,
		rd:   respReader{br: bufio.NewReaderSize(conn, 16<<10), maxLine: cfg.MaxLine, maxLiteral: cfg.MaxLiteral},
	}
}

// ReadBanner reads the server greeting, up to and including "* OK".
func (c *Client) ReadBanner(ctx context.Context) error { return c.readBanner(ctx) }

// Banner returns the greeting lines as received (without CRLF).
func (c *Client) Banner() []string { return append([]string(nil), c.banner...) }

// Mechanisms returns the SASL mechanisms from the banner's "* AUTH" line,
// without the quotes Cyrus puts around them.
func (c *Client) Mechanisms() []string { return append([]string(nil), c.mechs...) }

// Close closes the connection without LOGOUT.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) readBanner(ctx context.Context) error {
	defer c.watch(ctx, true, false)()
	for {
		r, err := c.rd.read()
		if err != nil {
			return c.fail(ctx, fmt.Errorf("mupdate: reading banner: %w", err))
		}
		line := r.Tag + " " + r.Kind
		if len(r.Args) > 0 {
			line += " " + strings.Join(r.Args, " ")
		}
		c.banner = append(c.banner, line)
		switch {
		case r.Tag == "*" && r.Kind == "AUTH" && len(r.Args) > 0:
			for _, m := range strings.Fields(r.Args[0]) {
				c.mechs = append(c.mechs, strings.Trim(m, `"`))
			}
		case r.Tag == "*" && r.Kind == "OK":
			return nil
		case r.Tag == "*" && r.Kind == "BYE":
			return c.fail(ctx, fmt.Errorf("mupdate: server refused connection: BYE %q", r.Text()))
		case r.Tag != "*":
			return c.fail(ctx, fmt.Errorf("%w: tagged response %q in banner", ErrProtocol, line))
		}
	}
}

// Authenticate logs in with SASL PLAIN, sending the initial response as a
// LITERAL+ exactly like Cyrus backends do (tag A01, no continuation).
func (c *Client) Authenticate(ctx context.Context, user, password string) error {
	blob := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	buf := []byte(`A01 AUTHENTICATE "PLAIN" {` + strconv.Itoa(len(blob)) + "+}\r\n" + blob + "\r\n")
	_, err := c.roundTrip(ctx, "AUTHENTICATE", "A01", buf)
	return err
}

// Reserve sends RESERVE name location.
func (c *Client) Reserve(ctx context.Context, name, location string) error {
	_, err := c.command(ctx, "RESERVE", name, location)
	return err
}

// Activate sends ACTIVATE name location acl.
func (c *Client) Activate(ctx context.Context, name, location, acl string) error {
	_, err := c.command(ctx, "ACTIVATE", name, location, acl)
	return err
}

// Deactivate sends DEACTIVATE name location.
func (c *Client) Deactivate(ctx context.Context, name, location string) error {
	_, err := c.command(ctx, "DEACTIVATE", name, location)
	return err
}

// Delete sends DELETE name.
func (c *Client) Delete(ctx context.Context, name string) error {
	_, err := c.command(ctx, "DELETE", name)
	return err
}

// Noop sends NOOP and waits for its OK. Not for streaming connections: use
// SendNoop there.
func (c *Client) Noop(ctx context.Context) error {
	_, err := c.command(ctx, "NOOP")
	return err
}

// Find looks up one name. It returns ok=false when the server has no entry.
func (c *Client) Find(ctx context.Context, name string) (e Entry, ok bool, err error) {
	data, err := c.command(ctx, "FIND", name)
	if err != nil {
		return Entry{}, false, err
	}
	for _, r := range data {
		if e, err := r.Entry(); err == nil && e.Name == name {
			return e, true, nil
		}
	}
	return Entry{}, false, nil
}

// List returns every entry whose location starts with prefix (all entries
// when prefix is empty), in server order.
func (c *Client) List(ctx context.Context, prefix string) ([]Entry, error) {
	var args []string
	if prefix != "" {
		args = []string{prefix}
	}
	data, err := c.command(ctx, "LIST", args...)
	if err != nil {
		return nil, err
	}
	return entries(data)
}

// Logout sends LOGOUT, waits for the answer and closes the connection.
func (c *Client) Logout(ctx context.Context) error {
	_, err := c.roundTrip(ctx, "LOGOUT", "Q01", appendCommand(nil, "Q01", "LOGOUT"))
	cerr := c.conn.Close()
	if err != nil {
		return err
	}
	return cerr
}

// SendLogout writes LOGOUT without waiting for the answer, as Cyrus backends
// often do before closing.
func (c *Client) SendLogout(ctx context.Context) error {
	return c.write(ctx, appendCommand(nil, "Q01", "LOGOUT"))
}

// command sends a tagged command with LITERAL+ arguments and collects its
// data responses up to the tagged OK.
func (c *Client) command(ctx context.Context, cmd string, args ...string) ([]Response, error) {
	tag := "X" + strconv.Itoa(c.tagN)
	c.tagN++
	return c.roundTrip(ctx, cmd, tag, appendCommand(nil, tag, cmd, args...))
}

func (c *Client) roundTrip(ctx context.Context, cmd, tag string, buf []byte) ([]Response, error) {
	if err := c.broken(); err != nil {
		return nil, err
	}
	if err := c.write(ctx, buf); err != nil {
		return nil, err
	}
	defer c.watch(ctx, true, false)()
	var data []Response
	for {
		r, err := c.rd.read()
		if err != nil {
			return nil, c.fail(ctx, fmt.Errorf("mupdate: %s: %w", cmd, err))
		}
		switch {
		case r.Tag == tag && r.IsStatus():
			if r.Kind != "OK" {
				return data, &StatusError{Command: cmd, Status: r.Kind, Text: r.Text()}
			}
			return data, nil
		case r.Tag == tag:
			data = append(data, r)
		case r.Tag == "*" && r.Kind == "BYE":
			return nil, c.fail(ctx, fmt.Errorf("mupdate: %s: server closed: BYE %q", cmd, r.Text()))
		case r.Tag == "*" && (r.Kind == "BAD" || r.Kind == "NO"):
			return nil, c.fail(ctx, &StatusError{Command: cmd, Status: r.Kind, Text: r.Text()})
		default:
			return nil, c.fail(ctx, fmt.Errorf("%w: %s: unexpected response %s %s", ErrProtocol, cmd, r.Tag, r.Kind))
		}
	}
}

func (c *Client) write(ctx context.Context, buf []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.broken(); err != nil {
		return err
	}
	defer c.watch(ctx, false, true)()
	if _, err := c.conn.Write(buf); err != nil {
		return c.fail(ctx, fmt.Errorf("mupdate: write: %w", err))
	}
	return nil
}

// watch applies ctx's deadline and cancellation to the read and/or write side
// of the connection for the duration of one call.
func (c *Client) watch(ctx context.Context, read, write bool) (done func()) {
	set := func(t time.Time) {
		if read {
			_ = c.conn.SetReadDeadline(t)
		}
		if write {
			_ = c.conn.SetWriteDeadline(t)
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		set(dl)
	}
	stop := context.AfterFunc(ctx, func() { set(time.Unix(1, 0)) })
	return func() {
		if stop() || ctx.Err() == nil {
			set(time.Time{})
		}
	}
}

// fail records err as sticky: after a broken read or write the stream
// position is unknown, so the connection must not be reused.
func (c *Client) fail(ctx context.Context, err error) error {
	ctxErr := ctx.Err()
	if dl, ok := ctx.Deadline(); ok && ctxErr == nil && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl) {
		// The socket deadline fired a moment before ctx noticed.
		ctxErr = context.DeadlineExceeded
	}
	if ctxErr != nil {
		err = fmt.Errorf("%w (%w)", ctxErr, err)
	}
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.err == nil {
		c.err = err
	}
	return err
}

// broken returns the sticky error, if any.
func (c *Client) broken() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

func entries(data []Response) ([]Entry, error) {
	out := make([]Entry, 0, len(data))
	for _, r := range data {
		e, err := r.Entry()
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// IsStatus reports whether err is a NO or BAD answer with the given status
// ("NO" or "BAD"; "" matches either).
func IsStatus(err error, status string) bool {
	var se *StatusError
	return errors.As(err, &se) && (status == "" || se.Status == status)
}
