// Package mupdateclient is a small MUPDATE (RFC 3656) client that speaks the
// subset real Cyrus 3.6 components use: the banner, AUTHENTICATE "PLAIN" with
// a LITERAL+ initial response, RESERVE, ACTIVATE, DEACTIVATE, DELETE, FIND,
// LIST, NOOP, UPDATE streaming and LOGOUT, with every argument sent as a
// LITERAL+ string.
//
// It exists for load tools and tests. Its wire syntax is the server's own,
// internal/imapwire; what it sends and expects on top of that is written
// from real Cyrus transcripts, not from the server package.
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

	"github.com/rookery/rookery/internal/imapwire"
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
	rd    *imapwire.Reader
	wmu   sync.Mutex // serializes writes (SendNoop vs. the rest)
	w     *imapwire.Writer
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
	c := newClient(conn, cfg)
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

// newClient wraps an established connection; Dial then reads the banner.
func newClient(conn net.Conn, cfg Config) *Client {
	def := DefaultConfig()
	if cfg.MaxLiteral <= 0 {
		cfg.MaxLiteral = def.MaxLiteral
	}
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = def.MaxLine
	}
	return &Client{
		conn: conn,
		rd: imapwire.NewReader(bufio.NewReaderSize(conn, 16<<10), imapwire.Limits{
			MaxLineLength:  cfg.MaxLine,
			MaxLiteralSize: cfg.MaxLiteral,
			// A MAILBOX response is four lines and three literals.
			MaxCommandSize: 4*cfg.MaxLine + 3*cfg.MaxLiteral,
		}),
		w: imapwire.NewWriter(conn),
	}
}

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
		r, err := c.rd.ReadResponse()
		if err != nil {
			return c.fail(ctx, fmt.Errorf("mupdate: reading banner: %w", err))
		}
		line := r.Tag + " " + string(r.Kind)
		if r.Text != "" {
			line += " " + r.Text
		}
		c.banner = append(c.banner, line)
		switch {
		case r.Tag == "*" && r.Kind == "AUTH":
			for _, m := range strings.Fields(r.Text) {
				c.mechs = append(c.mechs, strings.Trim(m, `"`))
			}
		case r.Tag == "*" && r.Kind == imapwire.KindOK:
			return nil
		case r.Tag == "*" && r.Kind == imapwire.KindBYE:
			return c.fail(ctx, fmt.Errorf("mupdate: server refused connection: BYE %q", r.Text))
		case r.Tag != "*":
			return c.fail(ctx, fmt.Errorf("%w: tagged response %q in banner", imapwire.ErrProtocol, line))
		}
	}
}

// Authenticate logs in with SASL PLAIN, sending the initial response as a
// LITERAL+ exactly like Cyrus backends do (tag A01, no continuation).
func (c *Client) Authenticate(ctx context.Context, user, password string) error {
	blob := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	_, err := c.roundTrip(ctx, imapwire.Command{Tag: "A01", Name: "AUTHENTICATE", Args: []imapwire.Arg{
		{Kind: imapwire.Quoted, Value: "PLAIN"}, {Kind: imapwire.Literal, Value: blob},
	}})
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
		if isEntry(r) && r.Name == name {
			return EntryOf(r), true, nil
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
	_, err := c.roundTrip(ctx, imapwire.Command{Tag: "Q01", Name: "LOGOUT"})
	cerr := c.conn.Close()
	if err != nil {
		return err
	}
	return cerr
}

// SendLogout writes LOGOUT without waiting for the answer, as Cyrus backends
// often do before closing.
func (c *Client) SendLogout(ctx context.Context) error {
	return c.write(ctx, imapwire.Command{Tag: "Q01", Name: "LOGOUT"})
}

// command sends a tagged command with LITERAL+ arguments and collects its
// data responses up to the tagged OK.
func (c *Client) command(ctx context.Context, name string, args ...string) ([]imapwire.Response, error) {
	cmd := imapwire.Command{Tag: "X" + strconv.Itoa(c.tagN), Name: name, Args: make([]imapwire.Arg, len(args))}
	c.tagN++
	for i, a := range args {
		cmd.Args[i] = imapwire.Arg{Kind: imapwire.Literal, Value: a}
	}
	return c.roundTrip(ctx, cmd)
}

func (c *Client) roundTrip(ctx context.Context, cmd imapwire.Command) ([]imapwire.Response, error) {
	if err := c.broken(); err != nil {
		return nil, err
	}
	if err := c.write(ctx, cmd); err != nil {
		return nil, err
	}
	defer c.watch(ctx, true, false)()
	var data []imapwire.Response
	for {
		r, err := c.rd.ReadResponse()
		if err != nil {
			return nil, c.fail(ctx, fmt.Errorf("mupdate: %s: %w", cmd.Name, err))
		}
		switch {
		case r.Tag == cmd.Tag && r.IsStatus():
			if r.Kind != imapwire.KindOK {
				return data, &StatusError{Command: cmd.Name, Status: string(r.Kind), Text: r.Text}
			}
			return data, nil
		case r.Tag == cmd.Tag:
			data = append(data, r)
		case r.Tag == "*" && r.Kind == imapwire.KindBYE:
			return nil, c.fail(ctx, fmt.Errorf("mupdate: %s: server closed: BYE %q", cmd.Name, r.Text))
		case r.Tag == "*" && (r.Kind == imapwire.KindBAD || r.Kind == imapwire.KindNO):
			return nil, c.fail(ctx, &StatusError{Command: cmd.Name, Status: string(r.Kind), Text: r.Text})
		default:
			return nil, c.fail(ctx, fmt.Errorf("%w: %s: unexpected response %s %s", imapwire.ErrProtocol, cmd.Name, r.Tag, r.Kind))
		}
	}
}

func (c *Client) write(ctx context.Context, cmd imapwire.Command) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.broken(); err != nil {
		return err
	}
	defer c.watch(ctx, false, true)()
	c.w.WriteCommand(cmd)
	if err := c.w.Flush(); err != nil {
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

// EntryOf returns the mailbox a MAILBOX or RESERVE response carries.
func EntryOf(r imapwire.Response) Entry {
	return Entry{Name: r.Name, Location: r.Location, ACL: r.ACL, Reserved: r.Kind == imapwire.KindReserve}
}

func isEntry(r imapwire.Response) bool {
	return r.Kind == imapwire.KindMailbox || r.Kind == imapwire.KindReserve
}

func entries(data []imapwire.Response) ([]Entry, error) {
	out := make([]Entry, 0, len(data))
	for _, r := range data {
		if !isEntry(r) {
			return nil, fmt.Errorf("%w: %s %s is not a mailbox", imapwire.ErrProtocol, r.Kind, r.Name)
		}
		out = append(out, EntryOf(r))
	}
	return out, nil
}

// IsStatus reports whether err is a NO or BAD answer with the given status
// ("NO" or "BAD"; "" matches either).
func IsStatus(err error, status string) bool {
	var se *StatusError
	return errors.As(err, &se) && (status == "" || se.Status == status)
}
