package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

const (
	// transportMaxPool is the number of idle connections kept per peer.
	transportMaxPool = 5
	// transportTimeout is raft's per-RPC I/O deadline (scaled up for
	// InstallSnapshot by the snapshot size).
	transportTimeout = 10 * time.Second
)

// newTransport binds the raft transport: mutual TLS when tlsCfg is set,
// else the secret handshake and sealed frames when secret is set (the
// returned stream layer counts refusals), else plain TCP (RaftInsecure).
//
// advertiseAddr, when set, is what peers are told to dial (a NAT, proxy or
// container mapping in front of addr); otherwise addr itself is advertised.
func newTransport(addr, advertiseAddr string, tlsCfg *tls.Config, secret []byte, logger *slog.Logger) (*raft.NetworkTransport, *secretStreamLayer, error) {
	tcpAddr, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: raft address %q: %w", addr, err)
	}
	// Port 0 binds an ephemeral port: advertise what was bound.
	var advertise net.Addr
	if tcpAddr.Port != 0 {
		advertise = tcpAddr
	}
	if advertiseAddr != "" {
		a, err := net.ResolveTCPAddr("tcp", advertiseAddr)
		if err != nil || a.IP == nil || a.IP.IsUnspecified() || a.Port == 0 {
			return nil, nil, fmt.Errorf("cluster: raft advertise address %q must be a reachable IP and port", advertiseAddr)
		}
		advertise = a
	}
	netCfg := &raft.NetworkTransportConfig{
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
		Logger:  newHclog(logger, "raft-net"),
	}
	switch {
	case tlsCfg != nil:
		stream, err := newTLSStreamLayer(addr, advertise, tlsCfg)
		if err != nil {
			return nil, nil, err
		}
		netCfg.Stream = trackConns(stream)
		return raft.NewNetworkTransportWithConfig(netCfg), nil, nil
	case len(secret) > 0:
		stream, err := newSecretStreamLayer(addr, advertise, secret, logger)
		if err != nil {
			return nil, nil, err
		}
		netCfg.Stream = trackConns(stream)
		return raft.NewNetworkTransportWithConfig(netCfg), stream, nil
	default:
		// raft's own TCP layer: its connections outlive Close (see
		// trackedStream), which only RaftInsecure nodes put up with.
		t, err := raft.NewTCPTransportWithConfig(addr, advertise, netCfg)
		if err != nil {
			return nil, nil, fmt.Errorf("cluster: raft transport on %s: %w", addr, err)
		}
		return t, nil, nil
	}
}

// raftTransport is the transport as raft sees it: without
// pipelined AppendEntries, and with heartbeat handling that can be fenced
// off before the stores close.
//
// Pipelining: hashicorp/raft v1.8's pipeline can deadlock. Its channels
// are unbuffered at the default MaxRPCsInFlight, and when a follower
// answers Success=false (routine after leadership changes) the decoder
// goroutine blocks handing back a response nobody reads while the sender
// blocks handing it the next request. Replication to that follower stops
// for the rest of the term while heartbeats go on, and raft's Shutdown
// waits for the stuck goroutine forever. It was seen here: a bench-mupdate
// run that churned leadership left a node that could not stop.
//
// Heartbeats: the transport runs raft's heartbeat handler on its own
// connection goroutines, outside raft's loop, and it can persist a new
// term. Neither raft's Shutdown nor the transport's Close waits for those
// goroutines, so one could write to a closed store (raft panics: "failed
// to save current term: database not open"), which a test run under load
// hit. fence stops new heartbeat handling and waits for any in progress.
//
// Early append: every AppendEntries a follower accepts tells earlyAppend
// how far that follower's log reaches.
//
// Lease (ReadLease only): AppendEntries records when each follower's
// acknowledged request was sent, and TimeoutNow, which raft sends only to
// hand leadership over, revokes the lease first (lease.go).
//
// Every other method, and the optional interfaces raft looks for
// (pre-vote, close), come from the embedded transport: the TCP one, or
// Config.Transport.
type raftTransport struct {
	Transport
	lease *lease        // nil unless ReadLease
	early *earlyAppend  // nil with PersistBeforeReplicate
	pace  *pace         // nil unless FollowerHold
	term  func() uint64 // raft's current term
	// appendEntries counts AppendEntries sent: raft's replication and
	// heartbeats, early appends and commit pushes.
	appendEntries atomic.Uint64

	mu     sync.RWMutex // held for reading while a heartbeat is handled
	fenced bool
}

// raft enables pre-vote and closing through these.
var (
	_ raft.Transport   = (*raftTransport)(nil)
	_ raft.WithPreVote = (*raftTransport)(nil)
	_ raft.WithClose   = (*raftTransport)(nil)
)

// The override below must carry the exact name and signature of raft's
// Transport method: a method of any other name leaves the embedded
// transport's pipeline in place (as an earlier "AppendPipeline" did).
// TestRaftDoesNotPipeline and TestReplicationSurvivesFollowerRejectingAppends prove it.
var _ func(*raftTransport, raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) = (*raftTransport).AppendEntriesPipeline

// AppendEntriesPipeline makes raft fall back to synchronous AppendEntries:
// raft's replication loop treats ErrPipelineReplicationNotSupported as
// "never pipeline to this follower".
func (*raftTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

// AppendEntries is raft's: it is answered from early append's
// acknowledgements when an early batch already gave the follower its
// entries (earlyAppend.answer), and sent otherwise, to a follower the
// commit does not need after a hold (pace).
func (t *raftTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if t.early != nil && t.early.answer(id, args, resp) {
		return nil
	}
	if t.pace == nil {
		return t.send(id, target, args, resp)
	}
	t.pace.before(id, args)
	err := t.send(id, target, args, resp)
	t.pace.after(id, args, err == nil && resp.Success)
	return err
}

// send sends one request and, with a lease, records an acknowledgement of
// the leader's term: the follower then knows this node as leader and has
// restarted its heartbeat timeout after sent. Early batches and commit
// pushes go through it too.
func (t *raftTransport) send(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	var sent time.Time
	if t.lease != nil {
		sent = t.lease.clock.Now()
	}
	t.appendEntries.Add(1)
	err := t.Transport.AppendEntries(id, target, args, resp)
	if err == nil && resp.Success && resp.Term == args.Term {
		if t.lease != nil {
			t.lease.acked(id, args.Term, sent)
		}
		if t.early != nil {
			t.early.acked(id, args)
		}
	}
	return err
}

// TimeoutNow revokes the lease before raft tells a follower to start an
// election that the others vote in although they know a leader.
func (t *raftTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	if t.lease != nil {
		t.lease.revoke(t.term())
	}
	return t.Transport.TimeoutNow(id, target, args, resp)
}

// SetHeartbeatHandler installs cb behind the fence.
func (t *raftTransport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	if cb == nil {
		t.Transport.SetHeartbeatHandler(nil)
		return
	}
	t.Transport.SetHeartbeatHandler(func(rpc raft.RPC) {
		t.mu.RLock()
		defer t.mu.RUnlock()
		if !t.fenced {
			cb(rpc)
		}
	})
}

// fence makes later heartbeats go unanswered and returns once none is
// being handled; the stores can then be closed.
func (t *raftTransport) fence() {
	t.mu.Lock()
	t.fenced = true
	t.mu.Unlock()
}

// tlsStreamLayer is raft's StreamLayer over mutual TLS.
type tlsStreamLayer struct {
	net.Listener // TLS listener
	advertise    net.Addr
	client       *tls.Config
}

func newTLSStreamLayer(addr string, advertise net.Addr, cfg *tls.Config) (*tlsStreamLayer, error) {
	server, client, err := mutualTLS(cfg)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft transport on %s: %w", addr, err)
	}
	return &tlsStreamLayer{
		Listener:  tls.NewListener(l, server),
		advertise: advertise,
		client:    client,
	}, nil
}

// mutualTLS derives the server and client sides from one config: the
// cluster CA verifies both directions.
func mutualTLS(cfg *tls.Config) (server, client *tls.Config, err error) {
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil {
		return nil, nil, errors.New("cluster: config: RaftTLS has no certificate")
	}
	server = cfg.Clone()
	if server.ClientCAs == nil {
		server.ClientCAs = cfg.RootCAs
	}
	if server.ClientCAs != nil && server.ClientAuth < tls.RequireAndVerifyClientCert {
		server.ClientAuth = tls.RequireAndVerifyClientCert
	}
	client = cfg.Clone()
	if client.RootCAs == nil {
		client.RootCAs = cfg.ClientCAs
	}
	if client.GetClientCertificate == nil && len(client.Certificates) == 0 && cfg.GetCertificate != nil {
		return nil, nil, errors.New("cluster: config: RaftTLS needs Certificates (used as the client certificate)")
	}
	return server, client, nil
}

// Dial opens a TLS connection and completes the handshake within timeout,
// verifying the peer against the host part of its raft address unless the
// config names a ServerName.
func (t *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	cfg := t.client
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(string(address))
		if err != nil {
			return nil, err
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	d := &net.Dialer{Timeout: timeout}
	return tls.DialWithDialer(d, "tcp", string(address), cfg)
}

// Addr is the advertised address: the configured one, or what was bound.
func (t *tlsStreamLayer) Addr() net.Addr {
	if t.advertise != nil {
		return t.advertise
	}
	return t.Listener.Addr()
}
