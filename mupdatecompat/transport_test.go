package mupdatecompat

import (
	"bufio"
	"compress/flate"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testTLSConfig returns a server TLS config with a certificate for
// 127.0.0.1 generated for the test.
func testTLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "rookery test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func clientTLS(t testing.TB, srv *tls.Config) *tls.Config {
	pool := x509.NewCertPool()
	cert, err := x509.ParseCertificate(srv.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool.AddCert(cert)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

func TestStartTLS(t *testing.T) {
	tc := testTLSConfig(t)
	env := newEnv(t, func(c *Config) { c.TLSConfig = tc })
	c := env.dial()
	want := []string{cyrusBanner[0], "* STARTTLS", cyrusBanner[1], cyrusBanner[2], cyrusBanner[3]}
	if !reflect.DeepEqual(c.banner, want) {
		t.Fatalf("banner %q, want %q", c.banner, want)
	}
	// A01 is pipelined in the clear after STARTTLS: it must be discarded,
	// never run as if it came over TLS.
	c.send("S01 STARTTLS\r\nA01 AUTHENTICATE \"PLAIN\" \"" + plainIR("mupdate", "mupdatepw") + "\"\r\n")
	c.expect(`S01 OK "Begin TLS negotiation now"`)
	tlsc := tls.Client(c.nc, clientTLS(t, tc))
	if err := tlsc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c2 := newClient(t, tlsc)
	c2.readBanner()
	if !reflect.DeepEqual(c2.banner, cyrusBanner) {
		t.Fatalf("banner after STARTTLS %q, want %q (no STARTTLS line)", c2.banner, cyrusBanner)
	}
	c2.send("N1 NOOP\r\n")
	c2.expect(`N1 BAD "Please login first"`) // the pipelined login was dropped
	c2.send("S02 STARTTLS\r\n")
	c2.expect(`S02 BAD "Already did a successful Starttls"`)
	c2.login("mupdate")
	c2.send("F1 FIND \"x\"\r\n")
	c2.expect(`F1 OK "Search completed"`)
}

func TestStartTLSAfterLoginRefused(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.TLSConfig = testTLSConfig(t) })
	c := env.dial()
	c.login("mupdate")
	c.send("S01 STARTTLS\r\n")
	c.expect(`S01 BAD "Can't Starttls after authentication"`)
}

func TestImplicitTLSListener(t *testing.T) {
	tc := testTLSConfig(t)
	env := newEnv(t, func(c *Config) { c.TLSConfig = tc })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go env.srv.ServeTLS(ln)
	nc, err := tls.Dial("tcp", ln.Addr().String(), clientTLS(t, tc))
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, nc)
	c.readBanner()
	if !reflect.DeepEqual(c.banner, cyrusBanner) {
		t.Fatalf("implicit TLS banner %q, want %q", c.banner, cyrusBanner)
	}
	c.login("mupdate")
	c.send("X0 RESERVE \"a\" \"be1!p\"\r\n")
	c.expect(`X0 OK "done"`)

	// A plain-text client on the TLS port gets nothing it could parse.
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write([]byte("A01 NOOP\r\n"))
	raw.SetReadDeadline(time.Now().Add(ioTimeout))
	b, _ := io.ReadAll(raw)
	if strings.Contains(string(b), "MUPDATE") {
		t.Fatalf("plain client on the TLS port got a banner: %q", b)
	}
}

// deflateConn is the client side of COMPRESS DEFLATE.
type deflateConn struct {
	net.Conn
	r io.Reader
	w *flate.Writer
}

func (d *deflateConn) Read(p []byte) (int, error) { return d.r.Read(p) }
func (d *deflateConn) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	if err == nil {
		err = d.w.Flush()
	}
	return n, err
}

func TestCompressDeflate(t *testing.T) {
	env := newEnv(t, nil)
	c := env.dial()
	c.login("mupdate")
	c.send("C01 COMPRESS \"DEFLATE\"\r\n")
	c.expect(`C01 OK "DEFLATE active"`)
	fw, _ := flate.NewWriter(c.nc, flate.BestSpeed)
	dc := &deflateConn{Conn: c.nc, r: flate.NewReader(c.br), w: fw}
	z := newClient(t, dc)
	z.br = bufio.NewReader(dc)
	acl := strings.Repeat("anyone\tlrs\t", 100)
	z.send("X0 ACTIVATE \"user.z\" \"be1!default\" \"" + acl + "\"\r\n")
	z.expect(`X0 OK "done"`)
	z.send("F1 FIND \"user.z\"\r\n")
	r := z.resp()
	if r.Name != "MAILBOX" || r.Args[2].Value != acl {
		t.Fatalf("FIND over DEFLATE: %+v", r)
	}
	z.expect(`F1 OK "Search completed"`)
	z.send("C02 COMPRESS \"DEFLATE\"\r\n")
	z.expect(`C02 BAD "DEFLATE active via COMPRESS"`)
	z.send("Q01 LOGOUT\r\n")
	z.expect(`Q01 OK "bye-bye"`)
}
