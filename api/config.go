package api

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"
)

// Config configures the gRPC API of a node.
type Config struct {
	TLS TLSConfig

	// Auth checks "user:password" credentials (bearer or basic) and gives
	// every identity its role: the MUPDATE listener's users file and
	// writer/reader lists (*auth.Authenticator). Nil disables passwords
	// and makes every authenticated identity a writer.
	Auth Authenticator
	// Tokens are bearer tokens, configured by their SHA-256 only.
	Tokens []Token
	// OpenReads lets unauthenticated callers read (Get, List, Watch,
	// WaitRevision, Status, Members). Authentication is on as soon as
	// Auth, Tokens or a client CA is configured; with none of them every
	// RPC is open, which is only meant for tests and a laptop.
	OpenReads bool

	// PeerSecret is the cluster shared secret another node presents (in
	// PeerTokenMetadata) to call the Peer service.
	PeerSecret string
	// PeerCAFile is a PEM CA: a client certificate that verifies against it
	// is another node. It is also added to the handshake's client CAs.
	PeerCAFile string
	// InsecurePeers accepts Peer RPCs from anyone even when authentication
	// is on. Peer.Apply carries the writer identity, so this lets any
	// network client write; never set it outside a closed test network.
	InsecurePeers bool

	// DefaultPageSize and MaxPageSize bound List pages.
	DefaultPageSize int
	MaxPageSize     int
	// ListViewTTL is how long the point-in-time view behind a List page
	// token stays available after its last use; MaxListViews bounds how
	// many are kept (each pins the memory of the tree at that revision).
	ListViewTTL  time.Duration
	MaxListViews int

	// WatchProgressInterval is the default interval of progress messages;
	// MinWatchProgressInterval the smallest a client may ask for.
	WatchProgressInterval    time.Duration
	MinWatchProgressInterval time.Duration
	// WatchBatch is the most events read from history and sent at once.
	WatchBatch int

	// SnapshotChunkSize is the data size of one Snapshot stream message.
	SnapshotChunkSize int
}

// TLSConfig names the PEM files of the gRPC listener.
type TLSConfig struct {
	CertFile string
	KeyFile  string
	// ClientCAFile enables client certificates: a certificate that verifies
	// against it authenticates its subject (see certName).
	ClientCAFile string
	// RequireClientCert rejects handshakes without a valid client
	// certificate; otherwise a certificate is optional and callers may use
	// bearer tokens instead.
	RequireClientCert bool
}

// DefaultConfig returns the defaults: reads require authentication (when
// authentication is configured at all), 1000-entry pages, 5 s progress.
func DefaultConfig() Config {
	return Config{
		DefaultPageSize:          1000,
		MaxPageSize:              10000,
		ListViewTTL:              2 * time.Minute,
		MaxListViews:             64,
		WatchProgressInterval:    5 * time.Second,
		MinWatchProgressInterval: 50 * time.Millisecond,
		WatchBatch:               512,
		SnapshotChunkSize:        64 << 10,
	}
}

func (c *Config) fillDefaults() {
	d := DefaultConfig()
	if c.DefaultPageSize <= 0 {
		c.DefaultPageSize = d.DefaultPageSize
	}
	if c.MaxPageSize <= 0 {
		c.MaxPageSize = d.MaxPageSize
	}
	if c.ListViewTTL <= 0 {
		c.ListViewTTL = d.ListViewTTL
	}
	if c.MaxListViews <= 0 {
		c.MaxListViews = d.MaxListViews
	}
	if c.WatchProgressInterval <= 0 {
		c.WatchProgressInterval = d.WatchProgressInterval
	}
	if c.MinWatchProgressInterval <= 0 {
		c.MinWatchProgressInterval = d.MinWatchProgressInterval
	}
	if c.WatchBatch <= 0 {
		c.WatchBatch = d.WatchBatch
	}
	if c.SnapshotChunkSize <= 0 {
		c.SnapshotChunkSize = d.SnapshotChunkSize
	}
}

// serverTLS builds the listener's TLS configuration, nil when no server
// certificate is configured, plus the pool that identifies peers.
func (c *Config) serverTLS() (*tls.Config, *x509.CertPool, error) {
	t := c.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, nil, errors.New("api: TLS.CertFile and TLS.KeyFile go together")
	}
	var peerRoots *x509.CertPool
	if c.PeerCAFile != "" {
		p, err := loadPool(c.PeerCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("api: PeerCAFile: %w", err)
		}
		peerRoots = p
	}
	if t.CertFile == "" {
		if t.ClientCAFile != "" || c.PeerCAFile != "" {
			return nil, nil, errors.New("api: client and peer certificates need TLS: set TLS.CertFile and TLS.KeyFile")
		}
		return nil, nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("api: server certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCAFile != "" || c.PeerCAFile != "" {
		pool := x509.NewCertPool()
		for _, f := range []string{t.ClientCAFile, c.PeerCAFile} {
			if f == "" {
				continue
			}
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, nil, fmt.Errorf("api: client CA: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("api: client CA %s: no PEM certificate", f)
			}
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if t.RequireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	} else if t.RequireClientCert {
		return nil, nil, errors.New("api: TLS.RequireClientCert needs TLS.ClientCAFile")
	}
	return cfg, peerRoots, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return pool, nil
}
