package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/config"
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

// TestFollowerHoldReachesTheNode: raft.follower_hold is off by default and,
// when set, reaches the node.
func TestFollowerHoldReachesTheNode(t *testing.T) {
	if d := defaultConfig().Raft.FollowerHold.Std(); d != 0 {
		t.Errorf("raft.follower_hold is %v by default", d)
	}
	cfg := defaultConfig()
	cfg.Node.DataDir = t.TempDir()
	cfg.Raft.FollowerHold = config.Duration(2 * time.Millisecond)
	c, err := clusterConfig(cfg, "127.0.0.1:1", "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if c.FollowerHold != 2*time.Millisecond {
		t.Errorf("raft.follower_hold 2ms reached the node as %v", c.FollowerHold)
	}
}

// TestProposalsInFlightReachesTheNode: raft.proposals_in_flight defaults
// to the cluster package's default and, when set, reaches the node.
func TestProposalsInFlightReachesTheNode(t *testing.T) {
	for _, tc := range []struct{ set, want int }{{0, cluster.DefaultConfig().MaxProposalsInFlight}, {3, 3}} {
		cfg := defaultConfig()
		cfg.Node.DataDir = t.TempDir()
		if tc.set != 0 {
			cfg.Raft.ProposalsInFlight = tc.set
		}
		c, err := clusterConfig(cfg, "127.0.0.1:1", "", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if c.MaxProposalsInFlight != tc.want {
			t.Errorf("raft.proposals_in_flight %d reached the node as %d, want %d", tc.set, c.MaxProposalsInFlight, tc.want)
		}
	}
}
