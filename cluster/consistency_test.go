package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
)

// diverge applies a command to one node's store outside raft, as the
// forged AppendEntries of issue 9 left it: the node's directory now holds
// an entry no other member has, and its revisions run one ahead.
func diverge(t *testing.T, tn *testNode) {
	t.Helper()
	s := tn.node.store
	res := s.Apply(s.AppliedIndex(), []fsm.Command{{Op: fsm.OpActivate, Name: "user.injected", Location: "evil!default"}})
	if res[0].Code != fsm.CodeOK {
		t.Fatalf("out-of-band apply: %v", res[0].Code)
	}
}

// fillAndSettle applies n entries through the leader and waits until every
// running node has applied them.
func fillAndSettle(t *testing.T, c *testCluster, from, n int) {
	t.Helper()
	l := c.leader()
	var cmds []fsm.Command
	for i := from; i < from+n; i++ {
		cmds = append(cmds, activate(i))
	}
	mustApply(t, l.node, cmds...)
	index := l.node.raft.LastIndex()
	for _, tn := range c.running() {
		if err := tn.node.WaitApplied(testCtx(t), index); err != nil {
			t.Fatalf("%s: %v", tn.cfg.NodeID, err)
		}
	}
}

func noPeriodicChecks(cfg *Config) { cfg.ConsistencyCheckInterval = -1 }

func TestConsistencyCheckOfHealthyClusterIsConsistent(t *testing.T) {
	c := newTestCluster(t, 3, noPeriodicChecks)
	fillAndSettle(t, c, 0, 300)
	for _, tn := range c.running() {
		rep, err := tn.node.CheckConsistency(testCtx(t))
		if err != nil {
			t.Fatalf("check from %s: %v", tn.cfg.NodeID, err)
		}
		if !rep.Consistent || !rep.HasQuorum || len(rep.Members) != 3 || rep.Revision < 300 {
			t.Fatalf("check from %s: %+v", tn.cfg.NodeID, rep)
		}
		for _, m := range rep.Members {
			if m.Verdict != VerdictMatch || m.Hash != rep.QuorumHash || m.Err != "" {
				t.Fatalf("check from %s: member %+v", tn.cfg.NodeID, m)
			}
		}
		if !strings.HasPrefix(rep.Summary, "consistent: all 3 members hold ") {
			t.Fatalf("summary %q", rep.Summary)
		}
		if st := tn.node.Status(); st.Condition != "" || len(st.Alarms) != 0 || st.LastConsistencyCheck == nil {
			t.Fatalf("%s status after a consistent check: %+v", tn.cfg.NodeID, st)
		}
	}
}

func TestDivergedFollowerIsDetectedAndStopsServingReads(t *testing.T) {
	c := newTestCluster(t, 3, noPeriodicChecks)
	fillAndSettle(t, c, 0, 100)
	bad := c.followers()[0]
	diverge(t, bad)
	fillAndSettle(t, c, 100, 10)

	// The check runs on the leader, which tells the diverged node.
	l := c.leader()
	rep, err := l.node.CheckConsistency(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Consistent || !rep.HasQuorum {
		t.Fatalf("report %+v", rep)
	}
	if d := rep.Diverged(); len(d) != 1 || d[0] != bad.cfg.NodeID {
		t.Fatalf("diverged %v, want [%s]; %s", d, bad.cfg.NodeID, rep.Summary)
	}

	// The diverged node refuses every read with a temporary error.
	if _, _, err := bad.node.LinearizableGet(testCtx(t), mailboxName(1)); !errors.Is(err, ErrReadsRefused) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("LinearizableGet on the diverged node: %v", err)
	}
	if err := bad.node.LinearizableRead(testCtx(t)); !errors.Is(err, ErrReadsRefused) {
		t.Fatalf("LinearizableRead on the diverged node: %v", err)
	}
	st := bad.node.Status()
	if !strings.HasPrefix(st.Condition, "Diverged: directory hash ") || len(st.Alarms) != 1 || st.Alarms[0].Kind != AlarmDiverged || !st.Alarms[0].NeedsRestart {
		t.Fatalf("diverged node status: condition %q alarms %+v", st.Condition, st.Alarms)
	}
	// The others keep serving.
	for _, tn := range c.running() {
		if tn == bad {
			continue
		}
		if _, found, err := tn.node.LinearizableGet(testCtx(t), mailboxName(1)); err != nil || !found {
			t.Fatalf("read on healthy %s: found=%v err=%v", tn.cfg.NodeID, found, err)
		}
		if a := tn.node.Alarms(); len(a) != 0 {
			t.Fatalf("healthy %s has alarms %+v", tn.cfg.NodeID, a)
		}
	}
}

func TestDivergedLeaderHandsOverLeadership(t *testing.T) {
	c := newTestCluster(t, 3, noPeriodicChecks)
	fillAndSettle(t, c, 0, 50)
	bad := c.leader()
	diverge(t, bad)
	fillAndSettle(t, c, 50, 5)

	// A follower runs the check; the leader confirms it on its own.
	rep, err := c.followers()[0].node.CheckConsistency(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if d := rep.Diverged(); len(d) != 1 || d[0] != bad.cfg.NodeID {
		t.Fatalf("diverged %v, want [%s]", d, bad.cfg.NodeID)
	}
	waitNotLeading := func(what string) {
		t.Helper()
		deadline := time.Now().Add(8 * time.Second)
		for bad.node.IsLeader() || c.leader() == bad {
			if time.Now().After(deadline) {
				t.Fatalf("the diverged node still leads %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitNotLeading("after the check")
	// Handing leadership back to it does not stick either.
	if err := c.leader().node.TransferLeadership(testCtx(t), bad.cfg.NodeID); err != nil {
		t.Fatalf("transfer to the diverged node: %v", err)
	}
	waitNotLeading("after leadership was handed back to it")
	if _, _, err := bad.node.LinearizableGet(testCtx(t), mailboxName(1)); !errors.Is(err, ErrReadsRefused) {
		t.Fatalf("read on the diverged former leader: %v", err)
	}
	// Writes go on through the new leader.
	mustApply(t, c.leader().node, activate(1000))
}

func TestPeriodicCheckCatchesDivergenceWithoutBeingAsked(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.ConsistencyCheckInterval = 200 * time.Millisecond })
	fillAndSettle(t, c, 0, 50)
	bad := c.followers()[0]
	diverge(t, bad)
	fillAndSettle(t, c, 50, 5)
	deadline := time.Now().Add(15 * time.Second)
	for bad.node.CheckReads() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the periodic check did not flag the diverged node")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, tn := range c.running() {
		if tn != bad && tn.node.CheckReads() != nil {
			t.Fatalf("healthy %s refuses reads: %v", tn.cfg.NodeID, tn.node.CheckReads())
		}
	}
}

func TestNoMajorityHashMeansNobodyIsTrusted(t *testing.T) {
	rep := ConsistencyReport{Revision: 7, Members: []MemberHash{
		{ID: "a", Suffrage: Voter, Hash: fsm.Hash{Lo: 1}},
		{ID: "b", Suffrage: Voter, Hash: fsm.Hash{Lo: 2}},
		{ID: "c", Suffrage: Voter, Verdict: VerdictUnavailable},
	}}
	judge(&rep)
	if rep.HasQuorum || rep.Consistent || len(rep.Diverged()) != 2 || !strings.Contains(rep.Summary, "no hash has a majority") {
		t.Fatalf("%+v", rep)
	}
	// A non-voter's answer never makes the majority.
	rep = ConsistencyReport{Members: []MemberHash{
		{ID: "a", Suffrage: Voter, Hash: fsm.Hash{Lo: 1}},
		{ID: "b", Suffrage: Nonvoter, Hash: fsm.Hash{Lo: 2}},
		{ID: "c", Suffrage: Nonvoter, Hash: fsm.Hash{Lo: 2}},
	}}
	judge(&rep)
	if !rep.HasQuorum || rep.QuorumHash != (fsm.Hash{Lo: 1}) || len(rep.Diverged()) != 2 {
		t.Fatalf("%+v", rep)
	}
}
