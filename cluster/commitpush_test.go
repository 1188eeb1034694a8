package cluster

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// TestFollowersLearnACommitWithoutCommitTimeout sets raft's CommitTimeout
// to a minute, so raft itself would tell the followers about the last
// write of a burst only a minute later: they must apply it at once anyway,
// from the leader's commit push.
func TestFollowersLearnACommitWithoutCommitTimeout(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.CommitTimeout = time.Minute })
	leader := c.leader().node
	res := mustApply(t, leader, activate(1))
	index := leader.Status().AppliedIndex
	if res[0].Revision == 0 || index == 0 {
		t.Fatalf("write: %+v at index %d", res[0], index)
	}
	for _, f := range c.followers() {
		mustApplyWithin(t, f, index)
		if e, ok := f.node.Store().Get(mailboxName(1)); !ok || e.ModRevision != res[0].Revision {
			t.Fatalf("%s: entry %+v, %v after applying index %d", f.cfg.NodeID, e, ok, index)
		}
	}
	if leader.commitPushes.Load() == 0 {
		t.Fatal("no follower accepted a commit push")
	}
}

// TestWriteThroughFollowerWithoutCommitTimeout is the same for a write a
// follower forwards and waits to apply itself (gRPC Apply does): it must
// not wait for raft's CommitTimeout.
func TestWriteThroughFollowerWithoutCommitTimeout(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.CommitTimeout = time.Minute })
	f := c.followers()[0].node
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.Apply(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if res, err := f.Apply(ctx, []fsm.Command{activate(2)}); err != nil || res[0].Revision == 0 {
		t.Fatalf("write through %s: %+v, %v", f.ID(), res, err)
	}
}

// slowLogs, once armed, makes every append of a follower's log store take
// a while: the follower a commit did not wait for is still writing when it
// commits.
type slowLogs struct {
	raft.LogStore
	armed atomic.Bool
}

func (s *slowLogs) StoreLogs(logs []*raft.Log) error {
	if s.armed.Load() {
		time.Sleep(20 * time.Millisecond)
	}
	return s.LogStore.StoreLogs(logs)
}

// TestCommitPushWaitsForASlowFollowerInsteadOfBeingRefused: with one
// follower's appends taking 20 ms, the commit of a write is pushed to it
// once it holds the entry, not before (it would refuse, and raft would
// log a warning per write), and it still learns the commit without raft's
// CommitTimeout.
func TestCommitPushWaitsForASlowFollowerInsteadOfBeingRefused(t *testing.T) {
	logs := map[string]*slowLogs{}
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.CommitTimeout = time.Minute
		logs[cfg.NodeID] = &slowLogs{LogStore: raft.NewInmemStore()}
		cfg.Stores = &Stores{Logs: logs[cfg.NodeID], Stable: raft.NewInmemStore(), Snapshots: raft.NewInmemSnapshotStore()}
	})
	leader := c.leader()
	slow := c.followers()[0]
	logs[slow.cfg.NodeID].armed.Store(true)
	for i := range 5 {
		res := mustApply(t, leader.node, activate(i))
		index := leader.node.Status().AppliedIndex
		mustApplyWithin(t, slow, index)
		if e, ok := slow.node.Store().Get(mailboxName(i)); !ok || e.ModRevision != res[0].Revision {
			t.Fatalf("slow follower: entry %+v, %v", e, ok)
		}
	}
	if n := leader.node.commitPushRefusals.Load(); n != 0 {
		t.Errorf("followers refused %d commit pushes", n)
	}
}

// TestAnIdleLeaderSendsAppendEntriesAtHeartbeatPace: with the commit push
// telling followers of the last write, raft's CommitTimeout tick is only a
// fallback, so an idle leader with the default settings sends little more
// than its heartbeats (a tenth of the heartbeat timeout to a fifth, per
// follower): about 100 AppendEntries a second to two followers, where the
// 2 ms CommitTimeout used before sent about 700.
func TestAnIdleLeaderSendsAppendEntriesAtHeartbeatPace(t *testing.T) {
	c := newTestCluster(t, 3, defaultTiming)
	leader := c.leader().node
	mustApply(t, leader, activate(1))
	time.Sleep(500 * time.Millisecond) // the write's replication and push are over
	const idle = 2 * time.Second
	before := leader.trans.appendEntries.Load()
	time.Sleep(idle)
	sent := leader.trans.appendEntries.Load() - before
	perSecond := float64(sent) / idle.Seconds()
	t.Logf("idle leader: %d AppendEntries in %v (%.0f/s) to 2 followers", sent, idle, perSecond)
	if perSecond > 250 {
		t.Errorf("idle leader sent %.0f AppendEntries/s; heartbeats alone are about 70/s", perSecond)
	}
	if sent == 0 {
		t.Error("idle leader sent no AppendEntries: no heartbeats either")
	}
}

// mustApplyWithin waits for n to apply index, which only a commit push or
// raft's own messages can make it do.
func mustApplyWithin(t *testing.T, n *testNode, index uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.node.WaitApplied(ctx, index); err != nil {
		t.Fatalf("%s did not apply index %d: %v", n.cfg.NodeID, index, err)
	}
}

// pushesSent is how many commit pushes the leader sent and a follower
// answered, accepted or not.
func pushesSent(n *Node) uint64 { return n.commitPushes.Load() + n.commitPushRefusals.Load() }

// TestWritesInARowCarryEachOthersCommitWithoutPushes: while one writer's
// next entry comes within CommitPushDelay, that entry's AppendEntries tells
// the followers of the last commit and the leader pushes nothing; the
// burst's last commit is still pushed once the delay passes.
func TestWritesInARowCarryEachOthersCommitWithoutPushes(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.CommitTimeout = time.Minute
		cfg.CommitPushDelay = 2 * time.Second // far above one write, even on a loaded host
	})
	leader := c.leader().node
	const writes = 30
	for i := range writes {
		mustApply(t, leader, activate(i))
	}
	index := leader.Status().AppliedIndex
	for _, f := range c.followers() {
		mustApplyWithin(t, f, index)
	}
	// Only raft's tick (a minute away) or a push could tell them: one push
	// per follower for the last write, where pushing every commit would
	// have sent 2 per write.
	if n := pushesSent(leader); n > 4 {
		t.Errorf("leader sent %d commit pushes for %d writes in a row, want 2 (at most 4)", n, writes)
	}
}

// TestAFollowerThatWaitsForACommitIsPushedAtOnce: with both raft's tick and
// the lazy push a minute away, a follower's linearizable read and a write
// it forwards and applies itself still finish, because the leader pushes
// the commit they wait for at once. A write the follower does not wait to
// apply (MUPDATE's ApplyCommitted) is left to the lazy push.
func TestAFollowerThatWaitsForACommitIsPushedAtOnce(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.CommitTimeout = time.Minute
		cfg.CommitPushDelay = time.Minute
	})
	leader := c.leader().node
	f := c.followers()[0].node
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	mustApply(t, leader, activate(1))
	if err := f.LinearizableRead(ctx); err != nil {
		t.Fatalf("read on the follower after a write: %v", err)
	}
	if e, ok := f.Store().Get(mailboxName(1)); !ok || e.State != fsm.StateActive {
		t.Fatalf("the follower's read does not see the write: %+v, %v", e, ok)
	}
	if res, err := f.Apply(ctx, []fsm.Command{activate(2)}); err != nil || res[0].Revision == 0 {
		t.Fatalf("write through the follower: %+v, %v", res, err)
	}

	time.Sleep(200 * time.Millisecond) // the answers to the push just made arrive
	before := pushesSent(leader)
	res, err := f.ApplyCommitted(ctx, []fsm.Command{activate(3)})
	if err != nil || res[0].Revision == 0 {
		t.Fatalf("committed-only write through the follower: %+v, %v", res, err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := pushesSent(leader) - before; n != 0 {
		t.Errorf("a write nobody waits for on the follower got %d immediate pushes", n)
	}
	if _, ok := f.Store().Get(mailboxName(3)); ok {
		t.Error("the follower applied a commit nothing told it of")
	}
}
