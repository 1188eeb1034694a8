package cluster

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Metadata keys on Peer.Join: a request forwarded once is not forwarded
// again (no loops while leadership moves), and a join may ask for a
// non-voting seat.
const (
	mdForwarded = "x-rookery-forwarded"
	mdSuffrage  = "x-rookery-suffrage"
	nonvoter    = "nonvoter"
)

// RegisterPeerService registers the node-to-node Peer service on s. It must
// be called before s.Serve; the service is for cluster members only, so s
// should authenticate its callers (mutual TLS) outside loopback.
func (n *Node) RegisterPeerService(s *grpc.Server) {
	rookeryv1.RegisterPeerServer(s, &peerServer{n: n})
}

type peerServer struct {
	rookeryv1.UnimplementedPeerServer
	n *Node
}

// Apply proposes commands on this node if it leads. FAILED_PRECONDITION
// promises nothing was proposed; UNAVAILABLE leaves the outcome unknown.
func (s *peerServer) Apply(ctx context.Context, req *rookeryv1.PeerApplyRequest) (*rookeryv1.PeerApplyResponse, error) {
	n := s.n
	if n.closed.Load() {
		return nil, status.Error(codes.FailedPrecondition, "not leader: node is shutting down")
	}
	cmds, err := fsm.DecodeCommands(req.GetCommands())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "decode commands: %v", err)
	}
	if !n.IsLeader() {
		return nil, status.Error(codes.FailedPrecondition, "not leader")
	}
	ctx, cancel := n.withWriteTimeout(ctx)
	defer cancel()
	results, index, err := n.proposeChecked(ctx, cmds)
	if err != nil {
		return nil, toPeerError(err)
	}
	if index > 0 && req.GetAwaitCommit() {
		// The follower waits to apply it: no lazy push (commitpush.go).
		n.commits.urgentPush(index)
	}
	return &rookeryv1.PeerApplyResponse{Results: fsm.EncodeResults(results), Index: index}, nil
}

// applyStreamInFlight bounds the forwarded writes one ApplyStream has
// proposed and not yet answered; the stream stops reading beyond it. A
// follower keeps at most MaxProposalsInFlight batches in flight to one
// leader (forwarder).
const applyStreamInFlight = 64

// ApplyStream serves a follower's forwarded writes, each as Apply would and
// concurrently, answering each with its id as soon as it is done.
func (s *peerServer) ApplyStream(stream rookeryv1.Peer_ApplyStreamServer) error {
	s.n.applyStreamsServed.Add(1)
	if s.n.cfg.withoutApplyStream {
		return status.Error(codes.Unimplemented, "method ApplyStream not implemented")
	}
	ctx := stream.Context()
	var (
		sendMu sync.Mutex
		wg     sync.WaitGroup
	)
	defer wg.Wait() // Send must not outlive the handler
	slots := make(chan struct{}, applyStreamInFlight)
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-slots }()
			resp, err := s.Apply(ctx, req)
			if err != nil {
				st := status.Convert(err)
				resp = &rookeryv1.PeerApplyResponse{Code: uint32(st.Code()), Message: st.Message()}
			}
			resp.Id = req.GetId()
			sendMu.Lock()
			defer sendMu.Unlock()
			_ = stream.Send(resp) // fails only when the stream is gone, which the follower sees
		})
	}
}

// ReadIndex confirms leadership (by a heartbeat round, or the lease in
// ReadLease) and returns the index a follower must apply before serving a
// linearizable read. Concurrent calls share rounds.
func (s *peerServer) ReadIndex(ctx context.Context, _ *rookeryv1.ReadIndexRequest) (*rookeryv1.ReadIndexResponse, error) {
	n := s.n
	if n.closed.Load() || !n.IsLeader() {
		return nil, status.Error(codes.FailedPrecondition, "not leader")
	}
	ctx, cancel := n.withWriteTimeout(ctx)
	defer cancel()
	index, err := n.leaderIndex(ctx)
	if err != nil {
		return nil, toPeerError(err)
	}
	// The follower waits to apply up to index: it must not wait for a
	// lazy commit push.
	n.commits.urgentPush(index)
	return &rookeryv1.ReadIndexResponse{CommitIndex: index}, nil
}

// Lookup answers a follower's linearizable read of one name from the
// leader's state.
func (s *peerServer) Lookup(ctx context.Context, req *rookeryv1.LookupRequest) (*rookeryv1.LookupResponse, error) {
	n := s.n
	if n.closed.Load() || !n.IsLeader() {
		return nil, status.Error(codes.FailedPrecondition, "not leader")
	}
	if err := n.checkReads(); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	ctx, cancel := n.withWriteTimeout(ctx)
	defer cancel()
	e, ok, err := n.leaderGet(ctx, req.GetName())
	if err != nil {
		return nil, toPeerError(err)
	}
	if !ok {
		return &rookeryv1.LookupResponse{}, nil
	}
	return &rookeryv1.LookupResponse{
		Found: true, Name: e.Name, State: uint32(e.State), Location: e.Location, Acl: e.ACL,
		CreateRevision: e.CreateRevision, ModRevision: e.ModRevision,
		ReservedBy: e.ReservedBy, ReservedAt: e.ReservedAt,
	}, nil
}

// Join adds the caller as a voter (or non-voter), forwarding once to the
// leader when this node does not lead.
func (s *peerServer) Join(ctx context.Context, req *rookeryv1.AddMemberRequest) (*rookeryv1.AddMemberResponse, error) {
	n := s.n
	if n.closed.Load() {
		return nil, status.Error(codes.FailedPrecondition, "not leader: node is shutting down")
	}
	p := Peer{ID: req.GetId(), RaftAddr: req.GetRaftAddress(), APIAddr: req.GetApiAddress()}
	if err := checkPeer(p); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	md, _ := metadata.FromIncomingContext(ctx)
	voter := !contains(md.Get(mdSuffrage), nonvoter)
	forwarded := len(md.Get(mdForwarded)) > 0
	ctx, cancel := n.withWriteTimeout(ctx)
	defer cancel()
	var (
		index uint64
		err   error
	)
	if forwarded {
		index, err = n.addServerLocal(ctx, p, voter)
	} else {
		index, err = n.addServer(ctx, p, voter)
	}
	if err != nil {
		return nil, toPeerError(err)
	}
	return &rookeryv1.AddMemberResponse{Index: index}, nil
}

// ConsistencyHash answers this node's directory hash at a revision.
func (s *peerServer) ConsistencyHash(ctx context.Context, req *rookeryv1.ConsistencyHashRequest) (*rookeryv1.ConsistencyHashResponse, error) {
	if s.n.closed.Load() {
		return nil, status.Error(codes.Unavailable, ErrShutdown.Error())
	}
	return s.n.consistencyHash(ctx, req), nil
}

// CheckConsistency runs a consistency check on this node, at the asking
// member's request (it found this node diverged).
func (s *peerServer) CheckConsistency(ctx context.Context, _ *rookeryv1.CheckConsistencyRequest) (*rookeryv1.ConsistencyReport, error) {
	rep, err := s.n.checkConsistency(ctx, false)
	if err != nil {
		return nil, toPeerError(err)
	}
	return ConsistencyReportToProto(rep), nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
