package cluster

import (
	"fmt"
	"testing"
)

// BenchmarkFollowerWrite measures one writer through a follower, with
// commit on store and with raft's own rule, in both replication orders,
// and how many of its writes the follower answered from its own apply
// (docs/commit-on-store.md); via=leader is the same writer on the leader,
// for reference. The three nodes share this host's disk and cores, as
// make run's do.
//
//	go test ./cluster -run '^$' -bench BenchmarkFollowerWrite -benchtime 2000x
func BenchmarkFollowerWrite(b *testing.B) {
	for _, persistFirst := range []bool{true, false} {
		for _, leaderOnly := range []bool{false, true} {
			for _, via := range []string{"follower", "leader"} {
				name := fmt.Sprintf("persist_first=%v/commit_at_leader_only=%v/via=%s", persistFirst, leaderOnly, via)
				b.Run(name, func(b *testing.B) {
					c := newTestCluster(b, 3, func(cfg *Config) {
						defaultTiming(cfg)
						cfg.PersistBeforeReplicate = persistFirst
						cfg.CommitAtLeaderOnly = leaderOnly
					})
					n := c.leader().node
					if via == "follower" {
						n = c.followers()[0].node
					}
					lat := runWriters(b, []*Node{n}, 1, b.N, nil)
					reportLatencies(b, lat)
					b.ReportMetric(float64(n.answers.answered.Load())/float64(b.N), "local-answers/write")
				})
			}
		}
	}
}
