package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/freeport"
)

// bootstrapAndJoin starts n1 with Bootstrap, n2 joining through n1 (the
// leader) and n3 joining through n2 (a follower, which forwards the join).
func bootstrapAndJoin(t *testing.T) *testCluster {
	t.Helper()
	cfg1 := testConfig(t, "n1")
	cfg1.Bootstrap = true
	c := &testCluster{t: t, nodes: []*testNode{startNode(t, cfg1)}}
	c.waitLeader()
	cfg2 := testConfig(t, "n2")
	cfg2.Join = []string{cfg1.APIAddr}
	c.nodes = append(c.nodes, startNode(t, cfg2))
	c.waitLeader()
	cfg3 := testConfig(t, "n3")
	cfg3.Join = []string{"127.0.0.1:1", cfg2.APIAddr} // first address is dead
	c.nodes = append(c.nodes, startNode(t, cfg3))
	c.waitLeader()
	return c
}

func TestBootstrapThenJoinFormsAWorkingCluster(t *testing.T) {
	c := bootstrapAndJoin(t)
	members, err := c.nodes[2].node.Members(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 3 {
		t.Fatalf("members %+v", members)
	}
	byID := map[string]Member{}
	for _, m := range members {
		byID[m.ID] = m
	}
	for _, tn := range c.nodes {
		m, ok := byID[tn.cfg.NodeID]
		if !ok || m.Suffrage != Voter || m.APIAddr != tn.cfg.APIAddr || m.RaftAddr != tn.node.RaftAddr() {
			t.Fatalf("member %s: %+v (want voter with addresses %s, %s)", tn.cfg.NodeID, m, tn.node.RaftAddr(), tn.cfg.APIAddr)
		}
	}
	// Writes through the last joiner reach everyone.
	res := mustApply(t, c.nodes[2].node, reserve("user.dave", "imap-be04!default"))
	if res[0].Code != fsm.CodeOK {
		t.Fatalf("write: %+v", res[0])
	}
	for _, tn := range c.nodes {
		if err := tn.node.LinearizableRead(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if _, ok := tn.node.Store().Get("user.dave"); !ok {
			t.Fatalf("%s lacks the write", tn.cfg.NodeID)
		}
	}
	// Status agrees.
	st := c.nodes[1].node.Status()
	if st.Leader.ID != c.leader().cfg.NodeID || st.AppliedIndex == 0 || st.Revision == 0 || len(st.Members) != 3 {
		t.Fatalf("status %+v", st)
	}
}

func TestJoinWithNoReachableMemberFailsOpen(t *testing.T) {
	cfg := testConfig(t, "lonely")
	cfg.Join = []string{freeport.Addr(t)}
	cfg.WriteTimeout = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	n, err := Open(ctx, cfg)
	if err == nil {
		_ = n.Close()
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("open: %v, want ErrUnavailable", err)
	}
	t.Logf("join failed after %v: %v", time.Since(start), err)
}

func TestMembershipChangesOnline(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	fs := c.followers()

	// Leadership moves to a named member.
	target := fs[0]
	if err := l.node.TransferLeadership(testCtx(t), target.cfg.NodeID); err != nil {
		t.Fatal(err)
	}
	if nl := c.waitLeader(); nl != target {
		t.Fatalf("leader after transfer: %s, want %s", nl.cfg.NodeID, target.cfg.NodeID)
	}

	// Operations that must run on the leader name it from a follower.
	var nle *NotLeaderError
	if err := l.node.RemoveServer(testCtx(t), fs[1].cfg.NodeID); !errors.As(err, &nle) || nle.Leader.ID != target.cfg.NodeID {
		t.Fatalf("remove on follower: %v", err)
	}

	// A non-voter added through a follower (forwarded) receives the log.
	cfg4 := testConfig(t, "n4")
	n4 := startNode(t, cfg4) // no bootstrap/peers/join: waits to be added
	c.nodes = append(c.nodes, n4)
	if err := l.node.AddNonvoter(testCtx(t), Peer{ID: "n4", RaftAddr: n4.node.RaftAddr(), APIAddr: cfg4.APIAddr}); err != nil {
		t.Fatal(err)
	}
	res := mustApply(t, n4.node, activate(4)) // n4 forwards to the leader
	if res[0].Code != fsm.CodeOK {
		t.Fatalf("write through non-voter: %+v", res[0])
	}
	members, err := target.node.Members(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if m := findMember(members, "n4"); m == nil || m.Suffrage != Nonvoter || m.APIAddr != cfg4.APIAddr {
		t.Fatalf("n4 member: %+v", m)
	}

	// Remove a follower; it leaves the configuration and the peer map.
	gone := fs[1]
	if err := target.node.RemoveServer(testCtx(t), gone.cfg.NodeID); err != nil {
		t.Fatal(err)
	}
	members, err = target.node.Members(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if findMember(members, gone.cfg.NodeID) != nil || len(members) != 3 {
		t.Fatalf("after remove: %+v", members)
	}
	if _, ok := target.node.Store().Peers()[gone.cfg.NodeID]; ok {
		t.Fatal("removed member still in the peer map")
	}
	gone.stop()
	// Two voters left (n1-ish leader + one follower): writes still commit.
	mustApply(t, target.node, activate(5))
}

func findMember(ms []Member, id string) *Member {
	for i := range ms {
		if ms[i].ID == id {
			return &ms[i]
		}
	}
	return nil
}
