package mupdatecompat

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/rookery/rookery/auth"
	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
	wire "github.com/rookery/rookery/internal/imapwire"
)

// Banner fields of the real Cyrus master the transcripts were captured
// from; with them the banner needs no normalisation.
const (
	cyrusServerName = "mupdate-master"
	cyrusVersion    = "3.6.1-Debian-3.6.1-4+deb12u5"
)

// Test identities. mupdate is the writer the transcripts log in as.
var testPasswords = map[string]string{
	"mupdate": "mupdatepw", // writer
	"be1":     "be1pw",     // writer bound to servername be1
	"be2":     "be2pw",     // writer bound to servername be2
	"gw":      "gwpw",      // writer allowed to proxy (auth.proxy_identities)
	"fe":      "fepw",      // reader (frontend slave)
	"nobody":  "nobodypw",  // no role
}

var (
	usersOnce sync.Once
	users     *auth.Users
)

func testUsers(t testing.TB) *auth.Users {
	usersOnce.Do(func() {
		m := map[string]string{}
		for u, p := range testPasswords {
			h, err := auth.HashPasswordCost(p, bcrypt.MinCost)
			if err != nil {
				panic(err)
			}
			m[u] = h
		}
		var err error
		if users, err = auth.NewUsers(m); err != nil {
			panic(err)
		}
	})
	return users
}

func testAuthenticator(t testing.TB) *auth.Authenticator {
	cfg := auth.DefaultConfig()
	cfg.Writers = []string{"mupdate", "be1", "be2", "gw"}
	cfg.Readers = []string{"fe"}
	cfg.Servers = map[string]string{"be1": "be1", "be2": "be2"}
	cfg.Proxies = []string{"gw"}
	return auth.New(cfg, testUsers(t))
}

// syncBuffer is a log sink the tests can search.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testDirectory is a replica whose applied state the tests can see.
type testDirectory interface {
	directory.Replica
	Store() *fsm.Store
}

// testEnv is a real server on 127.0.0.1 over an in-process replica.
type testEnv struct {
	t    testing.TB
	srv  *Server
	dir  testDirectory
	addr string
	logs *syncBuffer
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.ServerName = cyrusServerName
	cfg.Version = cyrusVersion
	cfg.FailedAuthDelay = 0
	return cfg
}

func newEnv(t testing.TB, mutate func(*Config)) *testEnv {
	t.Helper()
	return newEnvDir(t, directory.NewLocal(fsm.New(fsm.DefaultConfig())), mutate)
}

func newEnvDir(t testing.TB, dir testDirectory, mutate func(*Config)) *testEnv {
	t.Helper()
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := NewServer(cfg, directory.NewService(dir, dir.Store()), testAuthenticator(t), logger)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return &testEnv{t: t, srv: srv, dir: dir, addr: ln.Addr().String(), logs: logs}
}

// apply writes directly to the directory, as another node would.
func (e *testEnv) apply(cmds ...fsm.Command) []fsm.Result {
	e.t.Helper()
	res, err := e.dir.Apply(context.Background(), cmds)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// client is a raw MUPDATE client for tests.
type client struct {
	t      testing.TB
	nc     net.Conn
	br     *bufio.Reader
	banner []string
}

const ioTimeout = 10 * time.Second

// dial connects and reads the banner up to its "* OK" line.
func (e *testEnv) dial() *client {
	e.t.Helper()
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	c := newClient(e.t, nc)
	c.readBanner()
	return c
}

func newClient(t testing.TB, nc net.Conn) *client {
	c := &client{t: t, nc: nc, br: bufio.NewReader(nc)}
	t.Cleanup(func() { nc.Close() })
	return c
}

func (c *client) readBanner() {
	c.t.Helper()
	c.banner = nil
	for {
		l := c.line()
		c.banner = append(c.banner, l)
		if strings.HasPrefix(l, "* OK") {
			return
		}
	}
}

func (c *client) send(s string) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// line reads one raw line without its CRLF.
func (c *client) line() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read line: %v (got %q)", err, l)
	}
	return strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r")
}

// expect reads raw lines and compares them.
func (c *client) expect(want ...string) {
	c.t.Helper()
	for _, w := range want {
		if got := c.line(); got != w {
			c.t.Fatalf("got  %q\nwant %q", got, w)
		}
	}
}

// resp reads one response, literals included.
func (c *client) resp() *wire.Command {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	r := wire.NewReader(c.br, wire.Limits{})
	cmd, err := r.ReadCommand()
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	return cmd
}

// eof asserts the server closed the connection without sending more.
func (c *client) eof() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	rest, err := io.ReadAll(c.br)
	if err != nil && !isConnReset(err) {
		c.t.Fatalf("waiting for close: %v (read %q)", err, rest)
	}
	if len(rest) > 0 {
		c.t.Fatalf("unexpected data before close: %q", rest)
	}
}

func isConnReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

func plainIR(user, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw))
}

// login authenticates the way Cyrus backends do.
func (c *client) login(user string) {
	c.t.Helper()
	ir := plainIR(user, testPasswords[user])
	c.send("A01 AUTHENTICATE \"PLAIN\" {" + strconv.Itoa(len(ir)) + "+}\r\n" + ir + "\r\n")
	c.expect(`A01 OK "Authenticated"`)
}

// lit formats strings as the {N+} literals Cyrus clients send.
func lit(ss ...string) string {
	var b strings.Builder
	for i, s := range ss {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString("{" + strconv.Itoa(len(s)) + "+}\r\n" + s)
	}
	return b.String()
}

// waitFor polls cond, for state that settles asynchronously.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
