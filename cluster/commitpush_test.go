package cluster

import (
	"context"
	"github.com/rookery/rookery/fsm"
	"testing"
	"time"
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
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := f.node.WaitApplied(ctx, index)
		cancel()
		if err != nil {
			t.Fatalf("%s did not apply index %d: %v", f.cfg.NodeID, index, err)
		}
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
