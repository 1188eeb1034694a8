package main

import (
	"log/slog"
	"testing"
)

// TestRaftOrderSettingReachesTheNode: raft.persist_before_replicate is off
// by default (a quorum of followers writes an entry while the leader does)
// and, when set, turns the node back to raft's own order.
func TestRaftOrderSettingReachesTheNode(t *testing.T) {
	for _, set := range []bool{false, true} {
		cfg := defaultConfig()
		cfg.Node.DataDir = t.TempDir()
		cfg.Raft.PersistBeforeReplicate = set
		c, err := clusterConfig(cfg, "127.0.0.1:1", "", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if c.PersistBeforeReplicate != set {
			t.Errorf("raft.persist_before_replicate = %v reached the node as %v", set, c.PersistBeforeReplicate)
		}
	}
	if defaultConfig().Raft.PersistBeforeReplicate {
		t.Error("raft.persist_before_replicate is on by default")
	}
}
