package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// testCA issues certificates for 127.0.0.1 valid for server and client auth.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
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
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// nodeTLS returns a RaftTLS config for one node: its certificate and the CA.
func (ca *testCA) nodeTLS(t *testing.T, id string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: id},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      ca.pool, // ClientCAs defaults to it
		MinVersion:   tls.VersionTLS13,
	}
}

func TestRaftOverMutualTLSReplicates(t *testing.T) {
	ca := newTestCA(t, "rookery test CA")
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.RaftTLS = ca.nodeTLS(t, cfg.NodeID) })
	res := mustApply(t, c.followers()[0].node, reserve("user.tls", "imap-be01!default"))
	if res[0].Code != fsm.CodeOK {
		t.Fatalf("write: %+v", res[0])
	}
	for _, tn := range c.running() {
		if err := tn.node.LinearizableRead(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if _, ok := tn.node.Store().Get("user.tls"); !ok {
			t.Fatalf("%s lacks the write", tn.cfg.NodeID)
		}
	}
}

func TestTLSStreamLayerRejectsPeersWithoutClusterCertificate(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	other := newTestCA(t, "some other CA")
	layer, err := newTLSStreamLayer("127.0.0.1:0", nil, ca.nodeTLS(t, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	defer layer.Close()
	accepted := make(chan error, 4)
	go func() {
		for {
			conn, err := layer.Accept()
			if err != nil {
				return
			}
			go func() {
				// The handshake runs on first use.
				_, err := conn.Read(make([]byte, 1))
				accepted <- err
				conn.Close()
			}()
		}
	}()
	addr := raft.ServerAddress(layer.Addr().String())

	tests := []struct {
		name string
		cfg  *tls.Config
	}{
		{"certificate from another CA", other.nodeTLS(t, "intruder")},
		{"no client certificate", &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS13}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dialer := &tlsStreamLayer{client: tt.cfg}
			conn, err := dialer.Dial(addr, time.Second)
			if err == nil {
				// TLS 1.3: the client learns of the rejection on read.
				_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
				_, _ = conn.Write([]byte{1})
				_, err = conn.Read(make([]byte, 1))
				conn.Close()
			}
			if err == nil {
				t.Fatal("connection accepted")
			}
			if serr := <-accepted; serr == nil {
				t.Fatal("server side accepted the handshake")
			}
		})
	}
}

// termGate is a StableStore that holds the next write of the current term,
// once armed, until its node closes the store (or three seconds pass), and
// counts writes arriving after the close instead of making them: a closed
// bolt store would fail them and raft would panic.
type termGate struct {
	raft.StableStore
	armed   atomic.Bool
	entered chan struct{}
	closed  chan struct{}
	late    atomic.Int32
}

func (s *termGate) SetUint64(key []byte, v uint64) error {
	if string(key) == "CurrentTerm" && s.armed.CompareAndSwap(true, false) {
		close(s.entered)
		select {
		case <-s.closed:
		case <-time.After(3 * time.Second):
		}
	}
	select {
	case <-s.closed:
		s.late.Add(1)
		return nil
	default:
		return s.StableStore.SetUint64(key, v)
	}
}

func (s *termGate) close() error {
	close(s.closed)
	return nil
}

// TestCloseWaitsForHeartbeatBeforeClosingStores delivers a heartbeat of a
// newer term, as a transport connection goroutine does, and closes the
// node while raft's handler is about to persist that term. The fence makes
// Close wait for the handler, so the term is written before the stores
// close; without it the write lands on a closed store (raft panics
// "failed to save current term: database not open").
func TestCloseWaitsForHeartbeatBeforeClosingStores(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	_, inmem := raft.NewInmemTransport(raft.ServerAddress(cfg.RaftAddr))
	ft := newFaultTransport(inmem)
	stable := &termGate{StableStore: raft.NewInmemStore(), entered: make(chan struct{}), closed: make(chan struct{})}
	cfg.Transport = ft
	cfg.Stores = &Stores{Logs: raft.NewInmemStore(), Stable: stable, Snapshots: raft.NewInmemSnapshotStore(), Close: stable.close}
	tn := startNode(t, cfg)
	c := &testCluster{t: t, nodes: []*testNode{tn}}
	c.waitLeader()

	stable.armed.Store(true)
	answered := make(chan raft.RPCResponse, 1)
	go func() {
		answered <- ft.deliverHeartbeat(&raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n2"), Addr: []byte("127.0.0.1:1")},
			Term:      tn.node.raft.CurrentTerm() + 1,
		})
	}()
	<-stable.entered
	if err := tn.node.Close(); err != nil {
		t.Fatal(err)
	}
	if r := <-answered; r.Error != nil {
		t.Fatalf("heartbeat: %v", r.Error)
	}
	if n := stable.late.Load(); n != 0 {
		t.Fatalf("%d term write(s) reached the stores after they closed", n)
	}
}
