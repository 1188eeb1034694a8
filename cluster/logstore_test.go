package cluster

import (
	"strings"
	"testing"
)

// The WAL log store must give the same guarantees as bolt: a node that
// stops resumes its log from disk, through a snapshot and beyond it, and
// catches up from the leader.
func TestWALLogStoreNodeResumesFromDiskAndCatchesUp(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.LogStore = LogStoreWAL })
	f := c.followers()[0]
	for i := 0; i < 30; i++ {
		mustApply(t, f.node, activate(i))
	}
	if err := f.node.TakeSnapshot(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	mustApply(t, f.node, activate(30)) // in the log after the snapshot
	f.stop()

	l := c.leader()
	for i := 31; i < 60; i++ {
		mustApply(t, l.node, activate(i))
	}
	re := startNode(t, f.cfg)
	c.nodes = append(c.nodes, re)
	if err := re.node.LinearizableRead(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := re.node.Store().View().Len(); got != 60 {
		t.Fatalf("restarted node has %d mailboxes, want 60", got)
	}
	mustApply(t, re.node, activate(60))
}

// Switching raft.log_store on an existing data dir would start the node
// from an empty log; it is refused with the reason.
func TestOpenRefusesDataDirOfTheOtherLogStore(t *testing.T) {
	tests := []struct{ created, reopened, want string }{
		{LogStoreBolt, LogStoreWAL, `holds a "bolt" raft log`},
		{LogStoreWAL, LogStoreBolt, `holds a "wal" raft log`},
	}
	for _, tt := range tests {
		t.Run(tt.created+"-then-"+tt.reopened, func(t *testing.T) {
			cfg := testConfig(t, "solo")
			cfg.Bootstrap = true
			cfg.LogStore = tt.created
			tn := startNode(t, cfg)
			c := &testCluster{t: t, nodes: []*testNode{tn}}
			c.waitLeader()
			mustApply(t, tn.node, activate(1))
			tn.stop()

			cfg.LogStore = tt.reopened
			_, err := tryStartNode(t, cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("reopen as %s: err %v, want it to contain %q", tt.reopened, err, tt.want)
			}
		})
	}
}
