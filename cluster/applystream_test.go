package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
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
