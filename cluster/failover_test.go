package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
)

func TestLeaderCloseElectsNewLeaderAndWritesContinue(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	old := c.leader()
	mustApply(t, c.followers()[0].node, activate(1))

	old.stop()
	// A write racing with the leader's death either succeeds (the follower
	// retries once the old leader is unreachable and a new one is elected)
	// or fails as ErrUnavailable when it was already on the wire to the dead
	// leader (outcome unknown, so never retried); it never hangs.
	for i, tn := range c.running() {
		start := time.Now()
		_, err := tn.node.Apply(context.Background(), []fsm.Command{activate(10 + i)})
		if err != nil && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("write through %s right after leader close: %v", tn.cfg.NodeID, err)
		}
		if took := time.Since(start); took > tn.cfg.WriteTimeout+2*time.Second {
			t.Fatalf("write through %s took %v", tn.cfg.NodeID, took)
		}
		t.Logf("write through %s right after leader close: err=%v after %v", tn.cfg.NodeID, err, time.Since(start))
	}
	// Once a new leader is elected, writes go through either survivor.
	c.waitLeader()
	for i, tn := range c.running() {
		res := mustApply(t, tn.node, activate(20+i))
		if res[0].Code != fsm.CodeOK {
			t.Fatalf("write through %s: %+v", tn.cfg.NodeID, res[0])
		}
	}
	nl := c.waitLeader()
	if nl.cfg.NodeID == old.cfg.NodeID {
		t.Fatal("closed node still leads")
	}
	for _, tn := range c.running() {
		if err := tn.node.LinearizableRead(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{1, 20, 21} {
			if _, ok := tn.node.Store().Get(mailboxName(i)); !ok {
				t.Fatalf("%s lacks %s", tn.cfg.NodeID, mailboxName(i))
			}
		}
	}
}

func TestRestartedNodeResumesFromDiskAndCatchesUp(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	f := c.followers()[0]
	mustApply(t, f.node, activate(1), activate(2))
	termBefore := f.node.Status().Term
	f.stop()

	l := c.leader()
	for i := 3; i < 50; i++ {
		mustApply(t, l.node, activate(i))
	}
	// Same config (Peers still set): a node with state must not bootstrap
	// again, it resumes its log and catches up from the leader.
	re := startNode(t, f.cfg)
	c.nodes = append(c.nodes, re)
	if err := re.node.LinearizableRead(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 50; i++ {
		if _, ok := re.node.Store().Get(mailboxName(i)); !ok {
			t.Fatalf("restarted node lacks %s", mailboxName(i))
		}
	}
	st := re.node.Status()
	if st.Term < termBefore || len(st.Members) != 3 {
		t.Fatalf("restarted node status %+v (term before %d)", st, termBefore)
	}
	// It takes writes again.
	mustApply(t, re.node, activate(100))
}

func TestSingleNodeRestartKeepsStateWithBootstrapStillSet(t *testing.T) {
	cfg := testConfig(t, "solo")
	cfg.Bootstrap = true
	tn := startNode(t, cfg)
	c := &testCluster{t: t, nodes: []*testNode{tn}}
	c.waitLeader()
	for i := 0; i < 20; i++ {
		mustApply(t, tn.node, activate(i))
	}
	if err := tn.node.TakeSnapshot(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	mustApply(t, tn.node, activate(20)) // one entry after the snapshot
	rev := tn.node.Store().Revision()
	tn.stop()

	re := startNode(t, cfg)
	c.nodes = []*testNode{re}
	c.waitLeader()
	if err := re.node.WaitRevision(testCtx(t), rev); err != nil {
		t.Fatal(err)
	}
	if got := re.node.Store().View().Len(); got != 21 {
		t.Fatalf("restarted store has %d mailboxes, want 21", got)
	}
	members, err := re.node.Members(testCtx(t))
	if err != nil || len(members) != 1 || members[0].ID != "solo" {
		t.Fatalf("members %+v, %v", members, err)
	}
}

func TestNoQuorumFailsWithinWriteTimeout(t *testing.T) {
	const writeTimeout = time.Second
	tests := []struct {
		name string
		// survivor picks the node left running.
		survivor func(c *testCluster) *testNode
	}{
		{"survivor was the leader", func(c *testCluster) *testNode { return c.leader() }},
		{"survivor was a follower", func(c *testCluster) *testNode { return c.followers()[0] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCluster(t, 3, func(cfg *Config) { cfg.WriteTimeout = writeTimeout })
			mustApply(t, c.leader().node, activate(1))
			s := tt.survivor(c)
			for _, tn := range c.running() {
				if tn != s {
					tn.stop()
				}
			}
			// Apply first: on a leader it proposes an entry that cannot
			// commit, and fails once the leader's lease runs out. The read
			// comes after, once the survivor has seen its peers go (a read
			// racing with their shutdown may still be confirmed by a
			// heartbeat they answered, which is correct).
			ops := []struct {
				name string
				op   func(context.Context) error
			}{
				{"apply", func(ctx context.Context) error {
					_, err := s.node.Apply(ctx, []fsm.Command{activate(2)})
					return err
				}},
				{"linearizable read", s.node.LinearizableRead},
			}
			for _, o := range ops {
				name := o.name
				start := time.Now()
				err := o.op(context.Background())
				took := time.Since(start)
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("%s without quorum: %v, want ErrUnavailable", name, err)
				}
				// Bounded by WriteTimeout (plus scheduling slack on a busy box).
				if took > writeTimeout+2*time.Second {
					t.Fatalf("%s took %v, WriteTimeout is %v", name, took, writeTimeout)
				}
				t.Logf("%s failed after %v: %v", name, took, err)
			}
		})
	}
}

func TestCallerDeadlineShorterThanWriteTimeoutIsHonoured(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	s := c.followers()[0]
	for _, tn := range c.running() {
		if tn != s {
			tn.stop()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.node.Apply(ctx, []fsm.Command{activate(1)})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want ErrUnavailable wrapping DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("took %v with a 200ms deadline", took)
	}
}

func TestClosedNodeReturnsErrShutdown(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	f := c.followers()[0]
	f.stop()
	if _, err := f.node.Apply(testCtx(t), []fsm.Command{activate(1)}); !errors.Is(err, ErrShutdown) {
		t.Fatalf("apply after close: %v", err)
	}
	if err := f.node.LinearizableRead(testCtx(t)); !errors.Is(err, ErrShutdown) {
		t.Fatalf("read after close: %v", err)
	}
	if err := f.node.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func ExampleNode_Apply() {
	// A Cyrus backend's RESERVE, sent to whichever node it is connected to.
	var n *Node // from Open
	if n == nil {
		return
	}
	res, err := n.Apply(context.Background(), []fsm.Command{{
		Op: fsm.OpReserve, Name: "user.alice", Location: "imap-be01!default", Identity: "mupdate-be01",
	}})
	switch {
	case errors.Is(err, ErrUnavailable):
		fmt.Println("NO temporary failure")
	case err != nil:
		fmt.Println("NO", err)
	default:
		fmt.Println(res[0].Code)
	}
}
