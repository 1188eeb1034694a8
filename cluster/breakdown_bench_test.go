package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	metrics "github.com/hashicorp/go-metrics"

	"github.com/rookery/rookery/fsm"
)

// BenchmarkCreateBreakdown splits the latency of one MUPDATE-style create
// (RESERVE, then ACTIVATE, each a write that returns once the leader has
// applied it, as mupdatecompat does) into its parts, at 1 and 16 writers,
// through the leader and through a follower, and prints one table per
// case. The parts come from the proposer's own timestamps (queue, hand-off
// to raft's leader loop, commit and apply) and from hashicorp/raft's
// metrics (leader fsync, replication round trip, follower fsync, FSM
// apply), so it also shows how many commands share an entry and how many
// fsyncs each command costs. order=persist-first is raft's own order
// (Config.PersistBeforeReplicate), order=early the default.
//
//	go test ./cluster -run '^$' -bench BenchmarkCreateBreakdown -benchtime 2000x
func BenchmarkCreateBreakdown(b *testing.B) {
	for _, store := range []string{LogStoreBolt, LogStoreWAL} {
		for _, order := range []string{"early", "persist-first"} {
			for _, via := range []string{"leader", "follower"} {
				for _, writers := range []int{1, 16} {
					for _, inflight := range []int{1, 2, 4, 1024} {
						name := fmt.Sprintf("store=%s/order=%s/via=%s/writers=%d/inflight=%d", store, order, via, writers, inflight)
						b.Run(name, func(b *testing.B) {
							benchBreakdown(b, name, store, order == "persist-first", via, writers, inflight)
						})
					}
				}
			}
		}
	}
}

func benchBreakdown(b *testing.B, name, store string, persistFirst bool, via string, writers, inflight int) {
	tr := &traceRecorder{}
	c := newTestCluster(b, 3, func(cfg *Config) {
		defaultTiming(cfg)
		cfg.LogStore = store
		cfg.PersistBeforeReplicate = persistFirst
		cfg.MaxProposalsInFlight = inflight
		cfg.trace = tr
	})
	leader := c.leader().node
	targets := []*Node{leader}
	if via == "follower" {
		targets = nil
		for _, tn := range c.followers() {
			targets = append(targets, tn.node)
		}
	}
	// raft's own timings, from now on.
	sink := metrics.NewInmemSink(time.Hour, time.Hour)
	mcfg := metrics.DefaultConfig("")
	mcfg.EnableHostname, mcfg.EnableRuntimeMetrics = false, false
	if _, err := metrics.NewGlobal(mcfg, sink); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _, _ = metrics.NewGlobal(mcfg, &metrics.BlackholeSink{}) })
	tr.reset()
	entries0, cmds0 := leader.proposer.entries.Load(), leader.proposer.commands.Load()

	var (
		next  atomic.Int64
		mu    sync.Mutex
		total []time.Duration
		wg    sync.WaitGroup
		fails atomic.Int64
	)
	base := int(time.Now().UnixNano() % 1_000_000 * 10)
	b.ResetTimer()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := targets[w%len(targets)]
			var local []time.Duration
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					break
				}
				act := activate(base + i)
				for _, cmd := range []fsm.Command{reserve(act.Name, act.Location), act} {
					start := time.Now()
					res, err := n.ApplyCommitted(context.Background(), []fsm.Command{cmd})
					local = append(local, time.Since(start))
					if err != nil || res[0].Code != fsm.CodeOK {
						fails.Add(1)
					}
				}
			}
			mu.Lock()
			total = append(total, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.StopTimer()
	elapsed := b.Elapsed()

	entries := leader.proposer.entries.Load() - entries0
	cmds := leader.proposer.commands.Load() - cmds0
	raftm := sampleMeans(sink)
	parts := tr.means()
	slices.Sort(total)
	mean := func(d []time.Duration) float64 {
		var s time.Duration
		for _, x := range d {
			s += x
		}
		return ms(s) / float64(max(1, len(d)))
	}
	writeMean := mean(total)
	leaderPart := parts.queue + parts.handoff + parts.commit

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "\n%s: %d creates (%d writes) in %.2fs, %.0f creates/s, %d failed; load %s\n", name, b.N, len(total),
		elapsed.Seconds(), float64(b.N)/elapsed.Seconds(), fails.Load(), loadavg())
	fmt.Fprintln(w, "part of one write (RESERVE or ACTIVATE)\tmean ms\t")
	row := func(what string, v float64) { fmt.Fprintf(w, "%s\t%.3f\t\n", what, v) }
	if via == "follower" {
		row("follower: queue, forward over gRPC, reply back", writeMean-leaderPart)
	}
	row("queue before the proposer", parts.queue)
	row("raft entry build + hand-off to the leader loop", parts.handoff)
	row("  leader fsync (raft.leader.dispatchLog, per entry)", raftm["raft.leader.dispatchLog"].mean)
	row("  replication round trip excl. follower fsync", raftm["raft.replication.appendEntries.rpc"].mean-raftm["raft.rpc.appendEntries.storeLogs"].mean)
	row("  follower fsync (raft.rpc.appendEntries.storeLogs)", raftm["raft.rpc.appendEntries.storeLogs"].mean)
	row("  commit time on the leader (raft.commitTime)", raftm["raft.commitTime"].mean)
	row("  FSM apply per call (raft.fsm.apply or applyBatch)", max(raftm["raft.fsm.apply"].mean, raftm["raft.fsm.applyBatch"].mean))
	row("leader fsync → committed and applied on the leader", parts.commit)
	if via == "leader" {
		row("reply to the caller", writeMean-leaderPart)
	}
	row("write, total (mean)", writeMean)
	row("write, p50", ms(total[len(total)/2]))
	row("write, p99", ms(total[min(len(total)-1, len(total)*99/100)]))
	fsyncs := raftm["raft.leader.dispatchLog"].count + raftm["raft.rpc.appendEntries.storeLogs"].count
	fmt.Fprintf(w, "commands per entry\t%.2f\t\n", float64(cmds)/float64(max(1, entries)))
	fmt.Fprintf(w, "log appends (leader + followers) per command\t%.3f\t\n", float64(fsyncs)/float64(max(1, cmds)))
	fmt.Fprintf(w, "entries per follower append RPC\t%.2f\t\n", 2*float64(entries)/float64(max(1, raftm["raft.rpc.appendEntries.storeLogs"].count)))
	_ = w.Flush()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "creates/s")
	b.ReportMetric(float64(cmds)/float64(max(1, entries)), "cmds/entry")
	if leader.early != nil {
		b.ReportMetric(float64(leader.early.stored.Load())/float64(max(1, entries)), "early/entry")
	}
	b.ReportMetric(0, "ns/op")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

type metricMean struct {
	count int
	mean  float64 // ms
}

// sampleMeans sums raft's timing samples by name (over labels and
// intervals) into means in milliseconds.
func sampleMeans(sink *metrics.InmemSink) map[string]metricMean {
	sums := map[string][2]float64{}
	for _, iv := range sink.Data() {
		iv.RLock()
		for _, s := range iv.Samples {
			v := sums[s.Name]
			v[0] += float64(s.Count)
			v[1] += s.Sum
			sums[s.Name] = v
		}
		iv.RUnlock()
	}
	out := map[string]metricMean{}
	for k, v := range sums {
		out[k] = metricMean{count: int(v[0]), mean: v[1] / max(1, v[0])}
	}
	return out
}

// traceRecorder sums the proposer's timestamps over all proposals.
type traceRecorder struct {
	mu                     sync.Mutex
	n                      int
	queue, handoff, commit time.Duration
}

func (t *traceRecorder) committed(batch []*proposal, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range batch {
		t.n++
		t.queue += p.taken.Sub(p.queued)
		t.handoff += p.handed.Sub(p.taken)
		t.commit += at.Sub(p.handed)
	}
}

func (t *traceRecorder) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n, t.queue, t.handoff, t.commit = 0, 0, 0, 0
}

type traceMeans struct{ queue, handoff, commit float64 }

func (t *traceRecorder) means() traceMeans {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := float64(max(1, t.n))
	return traceMeans{queue: ms(t.queue) / n, handoff: ms(t.handoff) / n, commit: ms(t.commit) / n}
}

// BenchmarkCommitTimeout shows what raft's CommitTimeout trades: a write
// through a follower that waits to be applied there (gRPC Apply) waits for
// the follower to learn the commit, which without further writes comes
// with the leader's next AppendEntries, sent every CommitTimeout to
// 2×CommitTimeout; those AppendEntries are sent whether or not anything
// changed, so a shorter timeout costs CPU on an idle cluster. It prints
// the write latency through a follower with one writer and the CPU the
// three idle nodes use.
//
//	go test ./cluster -run '^$' -bench BenchmarkCommitTimeout -benchtime 500x
func BenchmarkCommitTimeout(b *testing.B) {
	for _, ct := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond} {
		b.Run(fmt.Sprintf("commit_timeout=%v", ct), func(b *testing.B) {
			c := newTestCluster(b, 3, func(cfg *Config) {
				defaultTiming(cfg)
				cfg.CommitTimeout = ct
			})
			f := c.followers()[0].node
			const idle = 3 * time.Second
			cpu0 := processCPU()
			time.Sleep(idle)
			idleCPU := float64(processCPU()-cpu0) / float64(idle)
			lat := runWriters(b, []*Node{f}, 1, b.N, nil)
			slices.Sort(lat)
			fmt.Printf("\ncommit timeout %v: write through a follower, 1 writer: p50 %.2f ms, p99 %.2f ms; idle cluster CPU %.1f%% of a core; load %s\n",
				ct, ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), 100*idleCPU, loadavg())
			reportLatencies(b, lat)
			b.ReportMetric(100*idleCPU, "idle-cpu-%")
		})
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
