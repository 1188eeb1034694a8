package gateway

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rookery/rookery/config"
	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/freeport"
	"github.com/rookery/rookery/internal/mupdateclient"
	murderpkg "github.com/rookery/rookery/internal/murder"
)

// cyrus is the real Cyrus murder every test and benchmark in the package
// shares: master, be1 and be2 with POP3, alice on be1 and bob on be2.
// TestMain stops it.
var cyrus = &murderpkg.Shared{
	Options: murderpkg.Options{Roles: []string{murderpkg.RoleMaster, murderpkg.RoleBE1, murderpkg.RoleBE2}, WithPOP3: true},
	Setup: func(ctx context.Context, m *murderpkg.Murder) error {
		if err := m.CreateUser(ctx, murderpkg.RoleBE1, "alice"); err != nil {
			return err
		}
		return m.CreateUser(ctx, murderpkg.RoleBE2, "bob")
	},
}

func TestMain(m *testing.M) {
	code := m.Run()
	if err := cyrus.Close(); err != nil {
		slog.Error("stopping the Cyrus murder", "err", err)
	}
	// No goroutine a test started may outlive it; checked once the murder
	// (whose helpers are goroutines too) has stopped.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			slog.Error("goroutines left running", "err", err)
			code = 1
		}
	}
	os.Exit(code)
}

// cyrusServer is one Cyrus role's servername and service addresses.
type cyrusServer struct{ Name, IMAP, POP3, LMTP string }

// testMurder is the shared murder with its servers' addresses at hand.
type testMurder struct {
	*murderpkg.Murder
	BE1, BE2, FE cyrusServer
}

func server(m *murderpkg.Murder, role string) cyrusServer {
	return cyrusServer{Name: m.Name(role), IMAP: m.IMAPAddr(role), POP3: m.POP3Addr(role), LMTP: m.LMTPAddr(role)}
}

// murder returns the shared murder. It skips when Cyrus cannot run here,
// except in CI (CI=true), where it fails.
func murder(tb testing.TB) *testMurder {
	tb.Helper()
	m := cyrus.Get(tb)
	return &testMurder{Murder: m,
		BE1: server(m, murderpkg.RoleBE1), BE2: server(m, murderpkg.RoleBE2), FE: server(m, murderpkg.RoleFE)}
}

// Directory lists every entry the real mupdate master holds (MUPDATE LIST).
func (m *testMurder) Directory(ctx context.Context) ([]fsm.Entry, error) {
	c, err := mupdateclient.Dial(ctx, m.MasterAddr(), mupdateclient.DefaultConfig())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	list, err := c.List(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]fsm.Entry, 0, len(list))
	for _, e := range list {
		st := fsm.StateActive
		if e.Reserved {
			st = fsm.StateReserved
		}
		out = append(out, fsm.Entry{Name: e.Name, State: st, Location: e.Location, ACL: e.ACL})
	}
	return out, nil
}

// gw is a gateway under test with its own listeners.
type gw struct {
	srv   *Server
	rep   *Replica
	imap  string
	imaps string
	pop3  string
	lmtp  string
	ca    *x509.CertPool
	caPEM []byte
}

// testConfig is DefaultConfig with short delays, for a murder m (nil:
// no backends).
func testConfig(m *testMurder) Config {
	cfg := DefaultConfig()
	cfg.Hostname = "gw.test"
	cfg.Backend.AuthName, cfg.Backend.Password = "proxy", "proxypw"
	cfg.Limits.AuthFailureDelay = config.Duration(200 * time.Millisecond)
	cfg.Limits.LoginFailures = 1000
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if m != nil {
		for _, b := range []cyrusServer{m.BE1, m.BE2} {
			cfg.Servers[b.Name] = ServerAddrs{IMAP: b.IMAP, POP3: b.POP3, LMTP: b.LMTP}
		}
	}
	return cfg
}

// startGateway starts a gateway with cfg on fresh 127.0.0.1 listeners for
// every protocol, with a generated certificate.
func startGateway(tb testing.TB, cfg Config, rep *Replica) *gw {
	tb.Helper()
	pool, caPEM, keyPEM := testCert(tb)
	dir := tb.TempDir()
	cfg.TLS.CertFile, cfg.TLS.KeyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cfg.TLS.CertFile, caPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(cfg.TLS.KeyFile, keyPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	srv, err := New(cfg, rep)
	if err != nil {
		tb.Fatal(err)
	}
	g := &gw{srv: srv, rep: rep, ca: pool, caPEM: caPEM}
	for _, p := range []struct {
		proto Protocol
		addr  *string
	}{{ProtoIMAP, &g.imap}, {ProtoIMAPS, &g.imaps}, {ProtoPOP3, &g.pop3}, {ProtoLMTP, &g.lmtp}} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		*p.addr = ln.Addr().String()
		go srv.Serve(context.Background(), p.proto, ln)
	}
	tb.Cleanup(func() { srv.Close() })
	return g
}

// replicaFromMaster loads everything the real mupdate master holds.
func replicaFromMaster(tb testing.TB, m *testMurder) *Replica {
	tb.Helper()
	cfg := DefaultConfig()
	rep := NewReplica(cfg.ReplicaConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	entries, err := m.Directory(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	rep.Reset(entries, 1)
	rep.SetReady(true)
	return rep
}

// setEntry changes one replica entry as a Watch event would.
func setEntry(rep *Replica, name, location string, state fsm.State) {
	rev := rep.Revision() + 1
	rep.Apply([]fsm.Event{{Revision: rev, Type: fsm.EventPut, Entry: fsm.Entry{Name: name, Location: location, State: state}}})
}

// testCert makes a self-signed certificate for gw.test and 127.0.0.1 and
// returns a pool trusting it, the certificate and the key in PEM.
func testCert(tb testing.TB) (*x509.CertPool, []byte, []byte) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gw.test"},
		DNSNames:              []string{"gw.test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return pool, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// conn is a raw line-oriented client for wire-level assertions.
type conn struct {
	tb testing.TB
	c  net.Conn
	r  *bufio.Reader
}

func dial(tb testing.TB, addr string) *conn {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	tb.Cleanup(func() { c.Close() })
	return &conn{tb: tb, c: c, r: bufio.NewReader(c)}
}

func (c *conn) send(s string) {
	c.tb.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.tb.Fatalf("write %q: %v", s, err)
	}
}

func (c *conn) line() string {
	c.tb.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.tb.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// expect reads a line and checks its prefix.
func (c *conn) expect(prefix string) string {
	c.tb.Helper()
	l := c.line()
	if !strings.HasPrefix(l, prefix) {
		c.tb.Fatalf("got %q, want prefix %q", l, prefix)
	}
	return l
}

// until reads lines up to one with the prefix and returns them all.
func (c *conn) until(prefix string) []string {
	c.tb.Helper()
	var out []string
	for {
		l := c.line()
		out = append(out, l)
		if strings.HasPrefix(l, prefix) {
			return out
		}
	}
}

// closed reports whether the server closed the connection: EOF, or a
// reset when it closed with our bytes unread, within 10 s.
func (c *conn) closed() bool {
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c.r)
	return err == nil || !isTimeout(err)
}

func lmtpClient(tb testing.TB, addr string) *textproto.Conn {
	tb.Helper()
	c := dial(tb, addr)
	tp := textproto.NewConn(c.c)
	if _, _, err := tp.ReadResponse(220); err != nil {
		tb.Fatal(err)
	}
	return tp
}

// closedPort returns an address on which nothing listens.
func closedPort(tb testing.TB) string {
	tb.Helper()
	return freeport.Addr(tb)
}

func splitAddr(tb testing.TB, addr string) (string, string) {
	tb.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	return h, p
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

func listen(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ln
}

// waitFor polls cond for up to 10 s (for effects of another goroutine).
func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not reached within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
