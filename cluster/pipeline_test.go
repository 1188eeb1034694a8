package cluster

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// recordingHandler keeps every record's message, whatever its level.
type recordingHandler struct {
	mu   *sync.Mutex
	msgs *[]string
}

func (h recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.msgs = append(*h.msgs, r.Message)
	h.mu.Unlock()
	return nil
}
func (h recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordingHandler) WithGroup(string) slog.Handler      { return h }

// TestRaftDoesNotPipeline drives writes through a three-node cluster and
// checks that raft replicated synchronously: no leader logged "pipelining
// replication" and no netPipeline goroutine exists. Pipelining is off
// because of its deadlock (see raftTransport).
func TestRaftDoesNotPipeline(t *testing.T) {
	var mu sync.Mutex
	var msgs []string
	logger := slog.New(recordingHandler{mu: &mu, msgs: &msgs})
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.Logger = logger })

	leader := c.leader()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				mustApply(t, leader.node, activate(w*1000+i))
			}
		}(w)
	}
	wg.Wait()
	// Replication to both followers has run for a while: a pipeline, had
	// raft opened one, would be running now.
	time.Sleep(200 * time.Millisecond)

	buf := make([]byte, 1<<22)
	stacks := string(buf[:runtime.Stack(buf, true)])
	if strings.Contains(stacks, "netPipeline") {
		t.Errorf("a raft netPipeline goroutine runs: raft pipelines AppendEntries")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, m := range msgs {
		if strings.Contains(m, "pipelining replication") {
			t.Errorf("raft logged %q: it pipelines AppendEntries", m)
			break
		}
	}
}

// TestTransportRefusesPipelines calls the override directly, as raft does.
func TestTransportRefusesPipelines(t *testing.T) {
	var tr raft.Transport = &raftTransport{}
	p, err := tr.AppendEntriesPipeline("n2", "127.0.0.1:1")
	if p != nil || err != raft.ErrPipelineReplicationNotSupported {
		t.Fatalf("AppendEntriesPipeline = %v, %v; want nil, ErrPipelineReplicationNotSupported", p, err)
	}
}

// flakyLogs is a LogStore that fails every failEvery-th StoreLogs (0:
// none), making its node answer AppendEntries with Success=false.
type flakyLogs struct {
	raft.LogStore
	failEvery, calls, failed atomic.Int64
}

func (l *flakyLogs) StoreLogs(logs []*raft.Log) error {
	if n := l.failEvery.Load(); n > 0 && l.calls.Add(1)%n == 0 {
		l.failed.Add(1)
		return errInjected
	}
	return l.LogStore.StoreLogs(logs)
}

// TestReplicationSurvivesFollowerRejectingAppends has the followers answer
// every third AppendEntries with Success=false while four writers keep
// appends in flight, then checks that both followers catch up with the
// leader. With raft's pipeline on (the AppendEntriesPipeline override
// removed), a rejection arriving while the next append is being handed
// to the pipeline deadlocks it, and that follower never catches up.
func TestReplicationSurvivesFollowerRejectingAppends(t *testing.T) {
	logs := map[string]*flakyLogs{}
	c := newTestCluster(t, 3, func(cfg *Config) {
		l := &flakyLogs{LogStore: raft.NewInmemStore()}
		logs[cfg.NodeID] = l
		cfg.Stores = &Stores{Logs: l, Stable: raft.NewInmemStore(), Snapshots: raft.NewInmemSnapshotStore()}
	})
	leader := c.leader()
	for _, f := range c.followers() {
		logs[f.cfg.NodeID].failEvery.Store(3)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				mustApply(t, leader.node, activate(w*1000+i))
			}
		})
	}
	wg.Wait()
	for _, f := range c.followers() {
		logs[f.cfg.NodeID].failEvery.Store(0)
		if logs[f.cfg.NodeID].failed.Load() == 0 {
			t.Fatalf("%s never rejected an append", f.cfg.NodeID)
		}
	}
	want := leader.node.raft.LastIndex()
	for _, f := range c.followers() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := f.node.WaitApplied(ctx, want)
		cancel()
		if err != nil {
			t.Fatalf("%s stopped replicating: %v", f.cfg.NodeID, err)
		}
	}
}
