package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
)

// BenchmarkHeapGrownThroughRaft grows one node's directory to
// ROOKERY_BENCH_MAILBOXES realistic mailboxes (default one million; eight
// backends, five folders per user, one ACL per user, as fsm's
// BenchmarkScale) through raft, as a bulk import does: a single-node
// cluster with its bolt log and snapshots on disk, entries of 4,096
// commands, four in flight, the default SnapshotCommands. It waits for the
// snapshots those applies made due (the last one, once applies stop,
// compacts the store), then reports the live heap per mailbox
// of the running node (raft's cache of its last 512 log entries included)
// and of its store alone once the node is closed, and the snapshots taken;
// then the same with entries only (SnapshotCommands < 0), as before.
//
//	ROOKERY_BENCH_MAILBOXES=10000000 go test ./cluster -run '^$' -bench BenchmarkHeapGrownThroughRaft -benchtime 1x -timeout 60m
func BenchmarkHeapGrownThroughRaft(b *testing.B) {
	n := benchMailboxes(b)
	for _, tc := range []struct {
		name     string
		commands int
	}{{"snapshot_commands=default", 0}, {"entries_only", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				growThroughRaft(b, n, tc.commands)
			}
		})
	}
}

// growThroughRaft is one round of BenchmarkHeapGrownThroughRaft with
// Config.SnapshotCommands = commands.
func growThroughRaft(b *testing.B, n, commands int) {
	before := heapAlloc()
	snaps := messageCounter{next: testLogger(b).Handler(), prefixes: []string{"taking a snapshot", "snapshot taken"}, n: make([]atomic.Int64, 2)}
	started, taken := &snaps.n[0], &snaps.n[1]
	cfg := testConfig(b, "solo")
	defaultTiming(&cfg)
	cfg.Bootstrap = true
	cfg.Logger = slog.New(snaps)
	cfg.SnapshotCommands = commands
	tn := startNode(b, cfg)
	(&testCluster{t: b, nodes: []*testNode{tn}}).waitLeader()

	wall, cpu := time.Now(), cpuTime()
	importRealistic(b, tn.node, n, 4096, 4)
	b.ReportMetric(float64(n)/time.Since(wall).Seconds(), "mailboxes/s")
	count, store := tn.node.fsm.commands, tn.node.Store()
	for deadline := time.Now().Add(10 * time.Minute); count.every > 0 && time.Now().Before(deadline) &&
		(count.pending() >= count.every || store.CompactionDue() || started.Load() != taken.Load()); {
		time.Sleep(100 * time.Millisecond)
	}
	b.ReportMetric(time.Since(wall).Seconds(), "load+snapshots-s")
	b.ReportMetric((cpuTime() - cpu).Seconds(), "load+snapshots-cpu-s")
	b.ReportMetric(float64(taken.Load()), "snapshots")
	b.ReportMetric(float64(count.pending()), "commands-after-last-snapshot")
	if store.CompactionDue() {
		b.Log("the store's trees are still due a compaction")
	}
	b.ReportMetric(float64(heapAlloc()-before)/float64(n), "node-heap-B/mailbox")

	tn.stop()
	tn.node, tn.srv = nil, nil // the store alone stays reachable
	b.ReportMetric(float64(heapAlloc()-before)/float64(n), "store-heap-B/mailbox")
	if store.Len() != n {
		b.Fatalf("store holds %d mailboxes, want %d", store.Len(), n)
	}
	la, _ := os.ReadFile("/proc/loadavg")
	b.Logf("%d mailboxes, %d snapshots; load average %s", n, taken.Load(), strings.TrimSpace(string(la)))
	runtime.KeepAlive(store)
}

// benchMailboxes is ROOKERY_BENCH_MAILBOXES, default one million.
func benchMailboxes(b *testing.B) int {
	s := os.Getenv("ROOKERY_BENCH_MAILBOXES")
	if s == "" {
		return 1_000_000
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("ROOKERY_BENCH_MAILBOXES=%q", s)
	}
	return n
}

// importRealistic applies n realistic activations through node in entries
// of perEntry commands, inFlight at a time.
func importRealistic(b *testing.B, node *Node, n, perEntry, inFlight int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, inFlight)
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				from := int(next.Add(int64(perEntry))) - perEntry
				if from >= n {
					return
				}
				res, err := node.Apply(context.Background(), realisticRange(from, min(from+perEntry, n)))
				if err == nil && res[0].Code != fsm.CodeOK {
					err = fmt.Errorf("first command: %+v", res[0])
				}
				if err != nil {
					errs <- fmt.Errorf("import at %d: %w", from, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// realisticRange is commands from..to of a directory shaped like fsm's
// realistic benchmark data: five folders per user, one user in four in a
// domain, users spread over eight backends, one ACL per user.
func realisticRange(from, to int) []fsm.Command {
	folders := []string{"", ".Sent", ".Trash", ".Drafts", ".Sent.Archive"}
	cmds := make([]fsm.Command, 0, to-from)
	for i := from; i < to; i++ {
		u := i / len(folders)
		user := fmt.Sprintf("u%07d", u)
		base := "user." + user
		if u%4 == 0 {
			base = "example.com!" + base
		}
		cmds = append(cmds, fsm.Command{Op: fsm.OpActivate, Name: base + folders[i%len(folders)],
			Location: fmt.Sprintf("imap-backend-%02d!default", u%8), ACL: user + "\tlrswipkxtecdan\t", Identity: "imap-backend", Time: int64(u)})
	}
	return cmds
}

// messageCounter counts the info records whose message starts with each of
// prefixes, in n, and passes every record next wants on.
type messageCounter struct {
	next     slog.Handler
	prefixes []string
	n        []atomic.Int64
}

func (h messageCounter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h messageCounter) Handle(ctx context.Context, r slog.Record) error {
	for i, p := range h.prefixes {
		if strings.HasPrefix(r.Message, p) {
			h.n[i].Add(1)
		}
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h messageCounter) WithAttrs(as []slog.Attr) slog.Handler {
	h.next = h.next.WithAttrs(as)
	return h
}

func (h messageCounter) WithGroup(g string) slog.Handler {
	h.next = h.next.WithGroup(g)
	return h
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
