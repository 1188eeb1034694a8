package cluster

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync"
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
