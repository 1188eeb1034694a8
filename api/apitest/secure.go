package apitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/rookery/rookery/api"
	"github.com/rookery/rookery/auth"
	"github.com/rookery/rookery/cluster"
)

// PKI is a throw-away CA, with certificates issued from it on demand.
type PKI struct {
	CAFile string
	Pool   *x509.CertPool
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// NewPKI creates a CA valid for an hour, in a temp dir.
func NewPKI(t testing.TB, name string) *PKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{dir: t.TempDir(), ca: ca, caKey: key, Pool: x509.NewCertPool()}
	p.Pool.AddCert(ca)
	p.CAFile = p.write(t, name+"-ca.pem", "CERTIFICATE", der)
	return p
}

func (p *PKI) write(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Issue returns PEM cert and key files for the common name cn, valid for
// 127.0.0.1, with the given extended key usage.
func (p *PKI) Issue(t testing.TB, cn string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, cn+".pem", "CERTIFICATE", der), p.write(t, cn+"-key.pem", "EC PRIVATE KEY", kd)
}

// ClientTLS returns a client TLS config trusting the CA, presenting a
// client certificate for cn unless cn is empty.
func (p *PKI) ClientTLS(t testing.TB, cn string) *tls.Config {
	t.Helper()
	cfg := &tls.Config{RootCAs: p.Pool, MinVersion: tls.VersionTLS12}
	if cn != "" {
		cf, kf := p.Issue(t, cn, x509.ExtKeyUsageClientAuth)
		cert, err := tls.LoadX509KeyPair(cf, kf)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

// Identities of a secure test cluster (see StartSecure).
const (
	AdminCred      = "admin:adminpw"   // writer, by password
	ReaderCred     = "reader:readerpw" // reader, by password
	BackendCred    = "be1:be1pw"       // writer bound to server imap-be01
	NoRoleCred     = "nobody:nobodypw" // right password, no role
	Token          = "s3cret-token"    // bearer token of "ci-bot", a writer
	AdminCertCN    = "ops-admin"       // client certificate of a writer
	ReaderCertCN   = "ops-reader"      // client certificate of a reader
	PeerSecretTest = "cluster-peer-secret"
)

// Authenticator returns the users file and roles of a secure test cluster,
// hashed at bcrypt's minimum cost to keep tests fast.
func Authenticator(t testing.TB) *auth.Authenticator {
	t.Helper()
	hashes := map[string]string{}
	for user, pw := range map[string]string{"admin": "adminpw", "reader": "readerpw", "be1": "be1pw", "nobody": "nobodypw"} {
		h, err := auth.HashPasswordCost(pw, bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		hashes[user] = h
	}
	users, err := auth.NewUsers(hashes)
	if err != nil {
		t.Fatal(err)
	}
	cfg := auth.DefaultConfig()
	cfg.Writers = []string{"admin", "be1", AdminCertCN, "ci-bot"}
	cfg.Readers = []string{"reader", ReaderCertCN}
	cfg.Servers = map[string]string{"be1": "imap-be01"}
	return auth.New(cfg, users)
}

// StartSecure starts a cluster whose every node serves TLS with client
// certificates from the returned PKI, authenticates with the users file,
// a token and certificates (see the constants), and authenticates its
// Peer service with a shared secret that the nodes present to each other.
func StartSecure(t testing.TB, opts Options) (*Cluster, *PKI) {
	t.Helper()
	p := NewPKI(t, "rookery-test")
	serverCert, serverKey := p.Issue(t, "rookery-node", x509.ExtKeyUsageServerAuth)
	authn := Authenticator(t)
	opts.API = func(int) api.Config {
		cfg := api.DefaultConfig()
		cfg.TLS = api.TLSConfig{CertFile: serverCert, KeyFile: serverKey, ClientCAFile: p.CAFile}
		cfg.Auth = authn
		cfg.Tokens = []api.Token{{Identity: "ci-bot", SHA256: api.HashToken(Token)}}
		cfg.PeerSecret = PeerSecretTest
		return cfg
	}
	tweak := opts.Cluster
	opts.Cluster = func(i int, cfg *cluster.Config) {
		cfg.PeerDialOptions = []grpc.DialOption{
			grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: p.Pool, MinVersion: tls.VersionTLS12})),
			grpc.WithPerRPCCredentials(api.PeerCredentials(PeerSecretTest, true)),
		}
		if tweak != nil {
			tweak(i, cfg)
		}
	}
	return Start(t, opts), p
}
