package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/internal/testcluster"
)

// BenchmarkFailover kills the leader of a three-process cluster with
// SIGKILL, b.N times, and measures the time from the kill to the first
// write accepted through a survivor (a gRPC Activate sent to one surviving
// node, retried until it succeeds). The killed node is restarted on its
// data and the cluster settles before the next round. It prints the sorted
// times and p50/p90/p99 for each heartbeat timeout (the leader lease is
// the default, equal to it).
//
//	go test ./e2e -run '^$' -bench BenchmarkFailover -benchtime 20x -timeout 30m
func BenchmarkFailover(b *testing.B) {
	for _, hb := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond} {
		b.Run(fmt.Sprintf("heartbeat=%v", hb), func(b *testing.B) {
			rc := testcluster.Start(b, testcluster.Options{ExtraArgs: []string{
				"-raft.heartbeat_timeout", hb.String(), "-raft.election_timeout", hb.String(), "-log.level", "info",
			}})
			var took []time.Duration
			for i := 0; i < b.N; i++ {
				d, err := failoverOnce(b, rc, i)
				if err != nil {
					b.Fatalf("round %d: %v", i, err)
				}
				took = append(took, d)
			}
			slices.Sort(took)
			pct := func(p float64) time.Duration { return took[min(len(took)-1, int(p*float64(len(took))))] }
			var all []string
			for _, d := range took {
				all = append(all, fmt.Sprintf("%.2f", d.Seconds()))
			}
			load, _ := os.ReadFile("/proc/loadavg")
			fmt.Printf("\nfailover, heartbeat %v, %d kills: p50 %.3f s, p90 %.3f s, p99 %.3f s, max %.3f s; load %s  sorted (s): %s\n",
				hb, len(took), pct(0.5).Seconds(), pct(0.9).Seconds(), pct(0.99).Seconds(), took[len(took)-1].Seconds(),
				strings.Join(strings.Fields(string(load))[:3], " "), strings.Join(all, " "))
			b.ReportMetric(pct(0.5).Seconds(), "p50-s")
			b.ReportMetric(pct(0.99).Seconds(), "p99-s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// failoverOnce kills the leader, times the first write through a
// survivor, restarts the killed node and waits until all three agree on a
// leader again.
func failoverOnce(b *testing.B, rc *testcluster.Cluster, round int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leader, err := rc.WaitLeader(ctx)
	if err != nil {
		return 0, err
	}
	survivor := (leader + 1) % len(rc.Nodes)
	cl := rc.NodeClient(survivor)
	// A write before the kill: the survivor's connection is warm.
	if _, err := cl.Activate(ctx, fmt.Sprintf("user.warm%d", round), "be1!default", ""); err != nil {
		return 0, fmt.Errorf("write before the kill: %w", err)
	}
	start := time.Now()
	rc.Kill(leader)
	for {
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cl.Activate(wctx, fmt.Sprintf("user.failover%d", round), "be1!default", "")
		wcancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("no write accepted within a minute: %w", err)
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	rc.Start(leader)
	if _, err := rc.WaitLeader(ctx); err != nil {
		return 0, err
	}
	return took, nil
}
