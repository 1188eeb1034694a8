package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Flow-control windows of the links between nodes, fixed rather than
// probed. gRPC's probe (its BDP estimator) answers nearly every message
// received with a PING the sender must acknowledge, so a forwarded write
// cost two extra wake-ups of each process on top of its request and
// answer (docs/notes/perf.md §12). A stream may have peerStreamWindow
// bytes in flight unread and a connection peerConnWindow: room for the
// largest forwarded entry (1 MiB) without a window update. They also bound
// what one connection can make a node buffer unread.
const (
	peerStreamWindow = 2 << 20
	peerConnWindow   = 8 << 20
)

// PeerServerOptions are the options the gRPC server that serves the Peer
// service (RegisterPeerService) must be created with: the receiving side
// of the fixed windows.
func PeerServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.StaticStreamWindowSize(peerStreamWindow),
		grpc.StaticConnWindowSize(peerConnWindow),
	}
}

// peerClients caches one gRPC connection per peer address.
type peerClients struct {
	opts []grpc.DialOption

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newPeerClients(opts []grpc.DialOption) *peerClients {
	base := []grpc.DialOption{
		// Reconnect quickly: a peer that restarts or becomes leader must be
		// reachable again well within WriteTimeout.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
		// Fixed windows: no bandwidth-probe PINGs (above).
		grpc.WithStaticStreamWindowSize(peerStreamWindow),
		grpc.WithStaticConnWindowSize(peerConnWindow),
	}
	if len(opts) == 0 {
		base = append(base, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	return &peerClients{opts: append(base, opts...), conns: make(map[string]*grpc.ClientConn)}
}

func (p *peerClients) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return nil, ErrShutdown
	}
	if cc, ok := p.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, p.opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: peer client for %s: %w", addr, err)
	}
	p.conns[addr] = cc
	return cc, nil
}

// ready returns a client once the connection to addr is up. A connection
// that cannot be established means the request was never sent, which lets
// the caller retry a write safely; a failure after this point may not.
func (p *peerClients) ready(ctx context.Context, addr string) (rookeryv1.PeerClient, error) {
	cc, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	cc.Connect()
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return rookeryv1.NewPeerClient(cc), nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			return nil, fmt.Errorf("%w: peer %s unreachable (%s)", errNotApplied, addr, s)
		}
		if !cc.WaitForStateChange(ctx, s) {
			return nil, fmt.Errorf("%w: peer %s not connected (%s): %w", errNotApplied, addr, s, ctx.Err())
		}
	}
}

func (p *peerClients) close() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, cc := range conns {
		_ = cc.Close()
	}
}

// forwardReadIndex asks the leader for a read index.
func (n *Node) forwardReadIndex(ctx context.Context, leader Peer) (uint64, error) {
	client, err := n.peers.ready(ctx, leader.APIAddr)
	if err != nil {
		return 0, err
	}
	resp, err := client.ReadIndex(ctx, &rookeryv1.ReadIndexRequest{})
	if err != nil {
		return 0, fromPeerError(leader, err)
	}
	return resp.GetCommitIndex(), nil
}

// forwardLookup asks the leader for a linearizable read of one name.
func (n *Node) forwardLookup(ctx context.Context, leader Peer, name string) (fsm.Entry, bool, error) {
	client, err := n.peers.ready(ctx, leader.APIAddr)
	if err != nil {
		return fsm.Entry{}, false, err
	}
	resp, err := client.Lookup(ctx, &rookeryv1.LookupRequest{Name: name})
	if err != nil {
		return fsm.Entry{}, false, fromPeerError(leader, err)
	}
	if !resp.GetFound() {
		return fsm.Entry{}, false, nil
	}
	return fsm.Entry{
		Name: resp.GetName(), State: fsm.State(resp.GetState()), Location: resp.GetLocation(), ACL: resp.GetAcl(),
		CreateRevision: resp.GetCreateRevision(), ModRevision: resp.GetModRevision(),
		ReservedBy: resp.GetReservedBy(), ReservedAt: resp.GetReservedAt(),
	}, true, nil
}

// fromPeerError maps a Peer RPC failure: FAILED_PRECONDITION means the
// callee did nothing (not leader), anything else leaves the outcome unknown.
func fromPeerError(leader Peer, err error) error {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.FailedPrecondition, codes.Unimplemented:
		// Not leader, or no such method (an older leader): not applied.
		return fmt.Errorf("%w: leader %s: %s", errNotApplied, leader.ID, st.Message())
	case codes.InvalidArgument:
		return fmt.Errorf("cluster: leader %s rejected the request: %s", leader.ID, st.Message())
	default:
		return fmt.Errorf("%w: forwarding to leader %s at %s: %s", ErrUnavailable, leader.ID, leader.APIAddr, st.Message())
	}
}

// toPeerError maps a local failure to the status the Peer service returns.
func toPeerError(err error) error {
	switch {
	case errors.Is(err, errNotApplied), errors.Is(err, ErrNotLeader):
		return status.Error(codes.FailedPrecondition, "not leader: "+err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	default:
		return status.Error(codes.Unavailable, err.Error())
	}
}
