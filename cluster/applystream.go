package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// applyStreams sends a follower's forwarded writes to the leader over one
// long-lived Peer.ApplyStream instead of a Peer.Apply call per batch. A
// unary call sets up an HTTP/2 stream, its headers and a handler on both
// sides; through a follower at 16 connections that set-up was 9 % of the
// follower's CPU (NOTES.md, ninth session). A leader that does not know
// ApplyStream (an older rookeryd during a rolling upgrade) answers
// Unimplemented, and writes to it go by Peer.Apply while it leads. A
// leader change forgets which leaders lacked it: in a rolling upgrade the
// old leader is restarted on the new rookeryd, which ends its term, and one
// Unimplemented answer per leader change is cheap.
type applyStreams struct {
	n *Node

	mu    sync.Mutex
	cur   *applyStream
	unary map[string]bool // leaders' gRPC addresses without ApplyStream
	last  string          // the leader address of the last write
}

// applyStream is one open stream to one leader address.
type applyStream struct {
	addr   string
	stream grpc.BidiStreamingClient[rookeryv1.PeerApplyRequest, rookeryv1.PeerApplyResponse]
	cancel context.CancelFunc

	sendMu  sync.Mutex // orders Send, CloseSend and closing
	closing bool       // CloseSend was called: nothing more is sent

	mu      sync.Mutex
	nextID  uint64
	waiting map[uint64]chan applyReply
	err     error // set once the stream broke: every later request fails
}

type applyReply struct {
	resp *rookeryv1.PeerApplyResponse
	err  error
}

// apply forwards cmds to leader and returns their results and raft index.
func (a *applyStreams) apply(ctx context.Context, leader Peer, cmds []fsm.Command, await bool) ([]fsm.Result, uint64, error) {
	req := &rookeryv1.PeerApplyRequest{Commands: fsm.EncodeCommands(cmds), AwaitCommit: await}
	resp, err := a.send(ctx, leader, req)
	if err != nil {
		return nil, 0, err
	}
	results, err := fsm.DecodeResults(resp.GetResults())
	if err != nil {
		return nil, 0, fmt.Errorf("cluster: results from leader %s: %w", leader.ID, err)
	}
	if len(results) != len(cmds) {
		return nil, 0, fmt.Errorf("cluster: leader %s returned %d results for %d commands", leader.ID, len(results), len(cmds))
	}
	return results, resp.GetIndex(), nil
}

func (a *applyStreams) send(ctx context.Context, leader Peer, req *rookeryv1.PeerApplyRequest) (*rookeryv1.PeerApplyResponse, error) {
	s, err := a.stream(ctx, leader)
	if err != nil {
		return nil, err
	}
	if s == nil {
		a.n.unaryForwards.Add(1)
		client, err := a.n.peers.ready(ctx, leader.APIAddr)
		if err != nil {
			return nil, err
		}
		resp, err := client.Apply(ctx, req)
		if err != nil {
			return nil, fromPeerError(leader, err)
		}
		return resp, nil
	}
	resp, err := s.call(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: forwarding to leader %s: write outcome unknown: %w", ErrUnavailable, leader.ID, ctx.Err())
		}
		if status.Code(err) == codes.Unimplemented {
			a.noStream(leader.APIAddr)
		}
		return nil, fromPeerError(leader, err)
	}
	return resp, nil
}

// stream returns the open stream to leader, opening one (and letting the
// one to a former leader finish) as needed; nil means use Peer.Apply.
// Nothing was sent when it fails.
func (a *applyStreams) stream(ctx context.Context, leader Peer) (*applyStream, error) {
	addr := leader.APIAddr
	a.mu.Lock()
	defer a.mu.Unlock()
	if addr != a.last {
		a.last = addr
		clear(a.unary)
	}
	if a.unary[addr] {
		return nil, nil
	}
	if s := a.cur; s != nil {
		if s.addr == addr && s.healthy() {
			return s, nil
		}
		s.finish()
		a.cur = nil
	}
	client, err := a.n.peers.ready(ctx, addr)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(a.n.ctx)
	st, err := client.ApplyStream(sctx)
	if err != nil {
		cancel()
		return nil, fromPeerError(leader, err)
	}
	s := &applyStream{addr: addr, stream: st, cancel: cancel, waiting: map[uint64]chan applyReply{}}
	a.n.goFunc(s.receive)
	a.cur = s
	return s, nil
}

// noStream remembers that the leader at addr has no ApplyStream.
func (a *applyStreams) noStream(addr string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.unary == nil {
		a.unary = map[string]bool{}
	}
	a.unary[addr] = true
}

// call sends one request and waits for its answer. A request whose answer
// does not come (the stream broke, or ctx ended) has an unknown outcome.
func (s *applyStream) call(ctx context.Context, req *rookeryv1.PeerApplyRequest) (*rookeryv1.PeerApplyResponse, error) {
	ch := make(chan applyReply, 1)
	s.sendMu.Lock()
	if s.closing {
		// Leadership moved while this write waited: it was not sent.
		s.sendMu.Unlock()
		return nil, status.Error(codes.FailedPrecondition, "not leader: the apply stream to a former leader is closing")
	}
	s.mu.Lock()
	if err := s.err; err != nil {
		s.mu.Unlock()
		s.sendMu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "not sent: the apply stream had ended: %v", err)
	}
	s.nextID++
	req.Id = s.nextID
	s.waiting[req.Id] = ch
	s.mu.Unlock()
	err := s.stream.Send(req)
	s.sendMu.Unlock()
	if err != nil {
		s.broke(err) // answers ch, and every other request on the stream
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		if r.resp.GetCode() != 0 {
			return nil, status.Error(codes.Code(r.resp.GetCode()), r.resp.GetMessage())
		}
		return r.resp, nil
	case <-ctx.Done():
		// Cancel the whole stream, as a unary call's deadline cancels that
		// call on the leader: a request held up in the network (a
		// partition) must not be applied long after its writer was told
		// the outcome is unknown. The other requests on it end unknown too,
		// and the next write opens a new stream.
		err := status.FromContextError(ctx.Err()).Err()
		s.broke(err)
		return nil, err
	}
}

// receive hands each answer to its request until the stream ends, then
// fails the requests still waiting.
func (s *applyStream) receive() {
	for {
		resp, err := s.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "apply stream closed by the leader")
			}
			s.broke(err)
			return
		}
		s.mu.Lock()
		ch, ok := s.waiting[resp.GetId()]
		delete(s.waiting, resp.GetId())
		s.mu.Unlock()
		if ok {
			ch <- applyReply{resp: resp}
		}
	}
}

func (s *applyStream) broke(err error) {
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
	for id, ch := range s.waiting {
		ch <- applyReply{err: s.err}
		delete(s.waiting, id)
	}
}

func (s *applyStream) healthy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err == nil
}

// finish closes the sending side: the leader answers what it has and
// ends the stream, and the receiver then stops.
func (s *applyStream) finish() {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.closing = true
	if err := s.stream.CloseSend(); err != nil {
		s.cancel()
	}
}
