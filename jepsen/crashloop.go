package jepsen

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rookery/rookery/internal/mupdateclient"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// CrashLoopConfig configures a crash loop: rounds of write load through
// every node over gRPC and MUPDATE, kill -9 of every node at once, restart,
// and a check that every acknowledged write is on every node.
type CrashLoopConfig struct {
	Binary   string
	Dir      string
	LogStore string // raft.log_store: "bolt" or "wal"
	Rounds   int
	// Load is how long writes run before the kill, drawn from
	// [Load/2, Load) each round so the kill lands at varied points.
	Load time.Duration
	// Writers per node and protocol.
	Writers int
	// Restart bounds the wait for the restarted cluster to agree on a
	// leader and converge.
	Restart time.Duration
	Seed    uint64
	Cluster ClusterConfig
	Logger  *slog.Logger
}

// DefaultCrashLoopConfig is three rounds of about a second of load, with
// snapshots frequent enough that restarts also replay from snapshots.
func DefaultCrashLoopConfig() CrashLoopConfig {
	return CrashLoopConfig{
		Rounds:  3,
		Load:    1500 * time.Millisecond,
		Writers: 2,
		Restart: 120 * time.Second,
		Seed:    uint64(time.Now().UnixNano()),
		Cluster: ClusterConfig{
			Nodes:             3,
			Direct:            true,
			WriteTimeout:      2 * time.Second,
			SnapshotThreshold: 2000,
			TrailingLogs:      500,
			SnapshotInterval:  time.Second,
		},
	}
}

// CrashLoopResult counts what a crash loop saw.
type CrashLoopResult struct {
	Store  string
	Rounds int // rounds completed (load, kill, restart, check)
	// Acked is the number of writes acknowledged over all rounds; every
	// one is checked on every node after every later restart.
	Acked int
	// Lost counts acknowledged writes missing (or different) on some node
	// after a restart, each write once.
	Lost int
	// Unrestartable counts node restarts that failed: the process exited,
	// or the cluster did not converge with it.
	Unrestartable int
	// WALRepairs counts raft-wal segment repairs nodes logged on restart
	// (cluster/walrepair.go): how often the loop reached the states
	// raft-wal v0.4.0 cannot reopen by itself.
	WALRepairs int
	// JournalReplays counts restarts that found appends in raft.journal
	// and replayed them into raft.db (bolt; docs/log-journal.md), and
	// JournalTornTails those that dropped a torn last append.
	JournalReplays   int
	JournalTornTails int
	Problems         []string
}

func (r *CrashLoopResult) String() string {
	return fmt.Sprintf("store=%s rounds=%d acknowledged_writes=%d lost_writes=%d nodes_not_restarted=%d wal_repairs=%d journal_replays=%d journal_torn_tails=%d problems=%d",
		r.Store, r.Rounds, r.Acked, r.Lost, r.Unrestartable, r.WALRepairs, r.JournalReplays, r.JournalTornTails, len(r.Problems))
}

// OK reports a loop without loss, failed restart or harness problem.
func (r *CrashLoopResult) OK() bool {
	return r.Lost == 0 && r.Unrestartable == 0 && len(r.Problems) == 0
}

// ackedWrites is what clients were told is done: name → location.
type ackedWrites struct {
	mu sync.Mutex
	m  map[string]string
}

func (a *ackedWrites) add(name, loc string) {
	a.mu.Lock()
	a.m[name] = loc
	a.mu.Unlock()
}

// RunCrashLoop runs the loop and reports its counts. It stops early at
// the first round whose restart failed, since later rounds would only
// repeat it; lost writes do not stop it.
func RunCrashLoop(ctx context.Context, cfg CrashLoopConfig) (*CrashLoopResult, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cc := cfg.Cluster
	cc.Binary, cc.Dir, cc.LogStore, cc.Logger = cfg.Binary, cfg.Dir, cfg.LogStore, cfg.Logger
	sctx, cancel := context.WithTimeout(ctx, cfg.Restart)
	c, err := StartCluster(sctx, cc)
	cancel()
	if err != nil {
		return nil, err
	}
	defer c.Close()

	res := &CrashLoopResult{Store: cfg.LogStore}
	acked := &ackedWrites{m: map[string]string{}}
	lost := map[string]bool{}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6b696c6c))
	for round := 1; round <= cfg.Rounds && ctx.Err() == nil; round++ {
		load := cfg.Load/2 + time.Duration(rng.Int64N(int64(cfg.Load/2)+1))
		n := crashRound(ctx, c, round, load, cfg.Writers, acked)

		restartFailed := restartAll(ctx, c, cfg.Restart, res)
		missing := 0
		if !restartFailed {
			missing = checkAcked(ctx, c, acked, lost, res)
		}
		res.Rounds = round
		cfg.Logger.Info("crash loop round", "store", cfg.LogStore, "round", round, "load", load,
			"acked_this_round", n, "acked_total", len(acked.m), "missing", missing, "lost_total", len(lost),
			"restart_failed", restartFailed)
		if restartFailed {
			break
		}
	}
	res.Acked = len(acked.m)
	res.Lost = len(lost)
	for _, n := range c.Nodes {
		if b, err := os.ReadFile(n.LogPath); err == nil {
			res.WALRepairs += strings.Count(string(b), "raft wal: resealed") + strings.Count(string(b), "raft wal: the tail segment was sealed on disk")
			res.JournalReplays += strings.Count(string(b), "raft journal: replayed into raft.db")
			res.JournalTornTails += strings.Count(string(b), "raft journal: dropping the tail")
		}
	}
	return res, nil
}

// crashRound runs writers on every node for load, kills every node at once
// while they write, and returns the writes acknowledged in the round.
func crashRound(ctx context.Context, c *Cluster, round int, load time.Duration, writers int, acked *ackedWrites) int {
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	var mu sync.Mutex
	count := 0
	ack := func(name, loc string) {
		acked.add(name, loc)
		mu.Lock()
		count++
		mu.Unlock()
	}
	for i, node := range c.Nodes {
		for w := 0; w < writers; w++ {
			prefix := fmt.Sprintf("user.crash%04d.%s.w%d", round, node.ID, w)
			loc := fmt.Sprintf("be%d!default", i+1)
			wg.Add(2)
			go func() { defer wg.Done(); grpcWriter(wctx, c, i, prefix+"g", loc, ack) }()
			go func() { defer wg.Done(); mupdateWriter(wctx, c, i, prefix+"m", loc, ack) }()
		}
	}
	sleepCtx(ctx, load)
	// kill -9 of every node at the same moment, writes in flight.
	var kw sync.WaitGroup
	for i := range c.Nodes {
		kw.Add(1)
		go func() { defer kw.Done(); _ = c.Kill(i) }()
	}
	kw.Wait()
	stop()
	wg.Wait()
	return count
}

// grpcWriter activates new mailboxes one after another over gRPC and
// records each acknowledged one.
func grpcWriter(ctx context.Context, c *Cluster, i int, prefix, loc string, ack func(name, loc string)) {
	dir := c.DirectoryClient(i)
	for seq := 0; ctx.Err() == nil; seq++ {
		name := fmt.Sprintf("%s%06d", prefix, seq)
		octx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := dir.Activate(octx, &rookeryv1.ActivateRequest{Name: name, Location: loc, Acl: "anyone\tlrs\t"})
		cancel()
		if err == nil {
			ack(name, loc)
		} else {
			sleepCtx(ctx, 20*time.Millisecond)
		}
	}
}

// mupdateWriter does the same over MUPDATE, as a Cyrus backend would.
func mupdateWriter(ctx context.Context, c *Cluster, i int, prefix, loc string, ack func(name, loc string)) {
	cfg := mupdateclient.DefaultConfig()
	cfg.User, cfg.Password = c.User, c.Password
	var cl *mupdateclient.Client
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	for seq := 0; ctx.Err() == nil; {
		if cl == nil {
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			var err error
			cl, err = mupdateclient.Dial(dctx, c.Nodes[i].MupdateAddr, cfg)
			cancel()
			if err != nil {
				cl = nil
				sleepCtx(ctx, 50*time.Millisecond)
				continue
			}
		}
		name := fmt.Sprintf("%s%06d", prefix, seq)
		seq++
		octx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := cl.Activate(octx, name, loc, "anyone\tlrs\t")
		cancel()
		switch {
		case err == nil:
			ack(name, loc)
		case mupdateclient.IsStatus(err, "NO"):
			sleepCtx(ctx, 20*time.Millisecond)
		default:
			cl.Close()
			cl = nil
		}
	}
}

// restartAll starts every node again and waits for the cluster to
// converge. Nodes whose process exits, or a cluster that does not
// converge, count as failed restarts; their log tails go to Problems.
func restartAll(ctx context.Context, c *Cluster, limit time.Duration, res *CrashLoopResult) (failed bool) {
	for i := range c.Nodes {
		if err := c.Start(i); err != nil {
			res.Problems = append(res.Problems, err.Error())
		}
	}
	rctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	_, err := c.WaitConverged(rctx)
	for i, n := range c.Nodes {
		if !c.Running(i) {
			res.Unrestartable++
			failed = true
			res.Problems = append(res.Problems, fmt.Sprintf("%s exited after restart; log tail:\n%s", n.ID, logTail(n.LogPath, 30)))
		}
	}
	if err != nil && !failed {
		// Every process runs but they do not agree: count the nodes not at
		// the leader's revision as not restarted.
		res.Unrestartable++
		failed = true
		res.Problems = append(res.Problems, fmt.Sprintf("restarted cluster: %v", err))
	}
	return failed
}

// checkAcked lists every node's directory (its own state, consistency
// STALE, after convergence) and returns how many acknowledged writes some
// node misses or holds differently; newly lost names go into lost.
func checkAcked(ctx context.Context, c *Cluster, acked *ackedWrites, lost map[string]bool, res *CrashLoopResult) int {
	acked.mu.Lock()
	defer acked.mu.Unlock()
	missing := 0
	for i, n := range c.Nodes {
		have, err := listAll(ctx, c, i)
		if err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("list %s: %v", n.ID, err))
			continue
		}
		for name, loc := range acked.m {
			if have[name] != loc {
				missing++
				if !lost[name] {
					lost[name] = true
					res.Problems = append(res.Problems, fmt.Sprintf("%s lacks acknowledged %s (%s), has %q", n.ID, name, loc, have[name]))
				}
			}
		}
	}
	return missing
}

func listAll(ctx context.Context, c *Cluster, i int) (map[string]string, error) {
	dir := c.DirectoryClient(i)
	out := map[string]string{}
	token := ""
	for {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := dir.List(lctx, &rookeryv1.ListRequest{
			NamePrefix: "user.crash", PageSize: 10000, PageToken: token,
			Consistency: rookeryv1.Consistency_CONSISTENCY_STALE,
		})
		cancel()
		if err != nil {
			return nil, err
		}
		for _, m := range resp.GetMailboxes() {
			out[m.GetName()] = m.GetLocation()
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}

// logTail returns the last n lines of a node's log.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
