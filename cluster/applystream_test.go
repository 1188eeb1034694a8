package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// writeThrough applies n writes concurrently through node, starting at
// mailbox first, and fails the test on any error.
func writeThrough(t *testing.T, node *Node, first, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			res, err := node.ApplyCommitted(ctx, []fsm.Command{activate(first + i)})
			if err == nil && res[0].Code != fsm.CodeOK {
				err = fmt.Errorf("result code %v", res[0].Code)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("write through %s: %v", node.ID(), err)
		}
	}
}

// TestFollowerWritesShareOneApplyStream: concurrent writes a follower
// forwards all travel one ApplyStream to the leader, none a Peer.Apply
// call of its own, and all are applied.
func TestFollowerWritesShareOneApplyStream(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader().node
	f := c.followers()[0].node
	writeThrough(t, f, 0, 40)
	writeThrough(t, f, 40, 40)
	if n := leader.applyStreamsServed.Load(); n != 1 {
		t.Errorf("leader served %d apply streams, want 1", n)
	}
	if n := f.unaryForwards.Load(); n != 0 {
		t.Errorf("follower forwarded %d writes with Peer.Apply calls", n)
	}
	for i := range 80 {
		if _, ok := leader.Store().Get(mailboxName(i)); !ok {
			t.Fatalf("write %d is missing on the leader", i)
		}
	}
}

// TestAnOlderLeaderWithoutApplyStreamGetsPeerApplyCalls: a leader that
// answers ApplyStream with Unimplemented (a rookeryd from before it, during
// a rolling upgrade) receives the follower's writes as Peer.Apply calls,
// and the write that found out is retried, not failed.
func TestAnOlderLeaderWithoutApplyStreamGetsPeerApplyCalls(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.withoutApplyStream = true })
	leader := c.leader().node
	f := c.followers()[0].node
	writeThrough(t, f, 0, 10)
	writeThrough(t, f, 10, 10)
	if n := f.unaryForwards.Load(); n == 0 {
		t.Error("no write went by Peer.Apply")
	}
	if n := leader.applyStreamsServed.Load(); n > 2 {
		t.Errorf("the follower asked for an apply stream %d times after being told there is none", n)
	}
	for i := range 20 {
		if _, ok := leader.Store().Get(mailboxName(i)); !ok {
			t.Fatalf("write %d is missing on the leader", i)
		}
	}
}

// TestApplyStreamFollowsANewLeader: after leadership moves to the other
// follower, the follower's writes go over a new stream to the new leader.
func TestApplyStreamFollowsANewLeader(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	old := c.leader().node
	fs := c.followers()
	f, next := fs[0].node, fs[1]
	writeThrough(t, f, 0, 10)
	if err := old.TransferLeadership(testCtx(t), next.cfg.NodeID); err != nil {
		t.Fatal(err)
	}
	if l := c.waitLeader(); l.cfg.NodeID != next.cfg.NodeID {
		t.Fatalf("leader is %s, want %s", l.cfg.NodeID, next.cfg.NodeID)
	}
	writeThrough(t, f, 10, 10)
	if n := next.node.applyStreamsServed.Load(); n != 1 {
		t.Errorf("new leader served %d apply streams, want 1", n)
	}
	for i := range 20 {
		if _, ok := next.node.Store().Get(mailboxName(i)); !ok {
			t.Fatalf("write %d is missing on the new leader", i)
		}
	}
}

// fakeApplyStream records what is sent; it is never read from.
type fakeApplyStream struct {
	grpc.ClientStream
	sent, closed atomic.Int32
}

func (f *fakeApplyStream) Send(*rookeryv1.PeerApplyRequest) error { f.sent.Add(1); return nil }
func (f *fakeApplyStream) CloseSend() error                       { f.closed.Add(1); return nil }
func (f *fakeApplyStream) Recv() (*rookeryv1.PeerApplyResponse, error) {
	return nil, io.EOF
}

// TestAWriteThatFindsItsStreamEndedIsNotSentAndSaysSo: a write that
// reaches a stream after leadership moved (its sending side closed), or
// after it broke, is not sent, and its error says not applied, so the
// follower retries it at the new leader instead of reporting an unknown
// outcome.
func TestAWriteThatFindsItsStreamEndedIsNotSentAndSaysSo(t *testing.T) {
	leader := Peer{ID: "n1", APIAddr: "127.0.0.1:1"}
	for _, tc := range []struct {
		name string
		end  func(*applyStream)
	}{
		{"closing", (*applyStream).finish},
		{"broken", func(s *applyStream) { s.broke(status.Error(codes.Unavailable, "connection reset")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeApplyStream{}
			s := &applyStream{stream: fake, cancel: func() {}, waiting: map[uint64]chan applyReply{}}
			tc.end(s)
			_, err := s.call(context.Background(), &rookeryv1.PeerApplyRequest{})
			if err == nil || fake.sent.Load() != 0 {
				t.Fatalf("call on an ended stream: err %v, sent %d", err, fake.sent.Load())
			}
			if err := fromPeerError(leader, err); !errors.Is(err, errNotApplied) {
				t.Errorf("error %v does not say not applied", err)
			}
		})
	}
}

// TestAWriterThatGivesUpCancelsItsApplyStream: a forwarded write whose
// caller's deadline passes cancels the stream it went on, as a unary
// call's deadline cancels that call on the leader, so the leader does not
// apply it long after (a request held up by a partition). The stream is
// then done with: the next write is not sent on it.
func TestAWriterThatGivesUpCancelsItsApplyStream(t *testing.T) {
	fake := &fakeApplyStream{}
	var cancelled atomic.Int32
	s := &applyStream{stream: fake, cancel: func() { cancelled.Add(1) }, waiting: map[uint64]chan applyReply{}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.call(ctx, &rookeryv1.PeerApplyRequest{}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call past its deadline: %v", err)
	}
	if cancelled.Load() == 0 || s.healthy() {
		t.Fatalf("the stream was not cancelled (cancels %d, healthy %v)", cancelled.Load(), s.healthy())
	}
	if _, err := s.call(context.Background(), &rookeryv1.PeerApplyRequest{}); fake.sent.Load() != 1 || !errors.Is(fromPeerError(Peer{ID: "n1"}, err), errNotApplied) {
		t.Fatalf("next write on the cancelled stream: sent %d, err %v", fake.sent.Load(), err)
	}
}

// TestAFollowerForwardsNoMoreBatchesAtOnceThanTheLeaderKeepsEntries: 80
// concurrent writes through a follower leave in batches, at most
// MaxProposalsInFlight of them in flight at once; more would only wait in
// the leader's proposer, each costing a request of its own.
func TestAFollowerForwardsNoMoreBatchesAtOnceThanTheLeaderKeepsEntries(t *testing.T) {
	for _, inFlight := range []int{1, 2} {
		t.Run(fmt.Sprint(inFlight), func(t *testing.T) {
			c := newTestCluster(t, 3, func(cfg *Config) { cfg.MaxProposalsInFlight = inFlight })
			f := c.followers()[0].node
			writeThrough(t, f, 0, 80)
			if peak := f.forwarder.slots.peakInFlight(); peak < 1 || peak > inFlight {
				t.Errorf("follower had %d batches in flight at once, want 1 to %d", peak, inFlight)
			}
		})
	}
}

// TestBatchesHungAtAFormerLeaderDoNotHoldBackTheNewOne: a follower's
// forwarding slots are counted per leader. With both of leader A's slots
// held (batches whose answers a partition keeps away until the write
// timeout), a batch for A waits, and goes at once when B takes over or
// when one of A's batches ends.
func TestBatchesHungAtAFormerLeaderDoNotHoldBackTheNewOne(t *testing.T) {
	s := newLeaderSlots(2)
	var mu sync.Mutex
	cur := Peer{ID: "a", APIAddr: "a:1"}
	var seen broadcast
	leader := func() Peer { mu.Lock(); defer mu.Unlock(); return cur }
	ctx := context.Background()
	for range 2 {
		if addr, ok := s.acquire(ctx, leader, seen.wait); !ok || addr != "a:1" {
			t.Fatalf("acquire with a free slot: %q %v", addr, ok)
		}
	}
	got := make(chan string, 1)
	go func() { addr, _ := s.acquire(ctx, leader, seen.wait); got <- addr }()
	select {
	case addr := <-got:
		t.Fatalf("a third batch for a's full slots went (to %q)", addr)
	case <-time.After(50 * time.Millisecond):
	}
	mu.Lock()
	cur = Peer{ID: "b", APIAddr: "b:1"}
	mu.Unlock()
	seen.notify()
	wantSlot(t, got, "b:1", "after the leader changed")

	// Back at a, still full: a release there lets the next batch go.
	mu.Lock()
	cur = Peer{ID: "a", APIAddr: "a:1"}
	mu.Unlock()
	go func() { addr, _ := s.acquire(ctx, leader, seen.wait); got <- addr }()
	time.Sleep(20 * time.Millisecond)
	s.release("a:1")
	wantSlot(t, got, "a:1", "after a release at a")
	if p := s.peakInFlight(); p != 2 {
		t.Errorf("peak in flight to one leader %d, want 2", p)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, ok := s.acquire(cctx, leader, seen.wait); ok {
		t.Error("acquire with a full leader and an ended context succeeded")
	}
}

// TestALeaderUpgradedDuringItsAbsenceGetsTheStreamAgain: a follower that
// found the leader without ApplyStream asks for the stream again once
// leadership has moved away and back, as it does when that leader is
// restarted on a newer rookeryd in a rolling upgrade.
func TestALeaderUpgradedDuringItsAbsenceGetsTheStreamAgain(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.withoutApplyStream = true })
	first := c.leader()
	fs := c.followers()
	f, other := fs[0].node, fs[1]
	writeThrough(t, f, 0, 5)
	writeThrough(t, f, 5, 5)
	if n := first.node.applyStreamsServed.Load(); n != 1 {
		t.Fatalf("first leader was asked for %d apply streams before the move, want 1", n)
	}
	for i, to := range []*testNode{other, first} {
		l := c.leader().node
		if err := l.TransferLeadership(testCtx(t), to.cfg.NodeID); err != nil {
			t.Fatal(err)
		}
		if l := c.waitLeader(); l.cfg.NodeID != to.cfg.NodeID {
			t.Fatalf("leader is %s, want %s", l.cfg.NodeID, to.cfg.NodeID)
		}
		writeThrough(t, f, 10+10*i, 10)
	}
	if n := first.node.applyStreamsServed.Load(); n != 2 {
		t.Errorf("first leader, back in the lead, was asked for %d apply streams in all, want 2", n)
	}
}

// wantSlot waits for a batch waiting in acquire to get a slot at want.
func wantSlot(t *testing.T, got <-chan string, want, after string) {
	t.Helper()
	select {
	case addr := <-got:
		if addr != want {
			t.Fatalf("%s, the waiting batch went to %q, want %q", after, addr, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s, the waiting batch still waits", after)
	}
}
