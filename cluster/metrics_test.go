package cluster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// hookRecorder collects what the metrics hooks report.
type hookRecorder struct {
	appends atomic.Int64
	mu      sync.Mutex
	reasons []string
}

func (h *hookRecorder) hooks() Hooks {
	return Hooks{
		StoreLogs: func(d time.Duration, entries int, err error) {
			if d > 0 && entries > 0 && err == nil {
				h.appends.Add(1)
			}
		},
		ProposalFailed: func(reason string) {
			h.mu.Lock()
			h.reasons = append(h.reasons, reason)
			h.mu.Unlock()
		},
	}
}

func TestHooksSeeLogAppendsLeaderChangesAndFailedProposals(t *testing.T) {
	recs := map[string]*hookRecorder{}
	c := newTestCluster(t, 3, func(cfg *Config) {
		r := &hookRecorder{}
		recs[cfg.NodeID] = r
		cfg.Hooks = r.hooks()
		cfg.WriteTimeout = time.Second
	})
	leader := c.leader()
	mustApply(t, leader.node, activate(1))
	for id, r := range recs {
		if r.appends.Load() == 0 {
			t.Errorf("%s: no timed log append reported", id)
		}
	}

	before := map[string]uint64{}
	for _, tn := range c.nodes {
		before[tn.cfg.NodeID] = tn.node.LeaderChanges()
	}
	if err := leader.node.TransferLeadership(testCtx(t), ""); err != nil {
		t.Fatal(err)
	}
	c.waitLeader()
	for _, tn := range c.nodes {
		if got := tn.node.LeaderChanges(); got <= before[tn.cfg.NodeID] {
			t.Errorf("%s: leader changes seen %d after a transfer, was %d", tn.cfg.NodeID, got, before[tn.cfg.NodeID])
		}
	}

	// Without quorum a write fails; the hook names why.
	l := c.leader()
	for _, tn := range c.followers() {
		tn.stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := l.node.Apply(ctx, []fsm.Command{activate(2)}); err == nil {
		t.Fatal("write without quorum succeeded")
	}
	r := recs[l.cfg.NodeID]
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reasons) != 1 || r.reasons[0] == "other" {
		t.Fatalf("failed-proposal reasons %q, want one classified reason", r.reasons)
	}
}

func TestProposalFailureReasons(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{ErrShutdown, "shutdown"},
		{errNotApplied, "no_leader"},
		{context.Canceled, "canceled"},
		{errors.Join(ErrUnavailable, context.DeadlineExceeded), "timeout"},
		{classifyApplyError(raft.ErrLeadershipLost), "unavailable"},
		{errors.New("boom"), "other"},
	} {
		if got := ProposalFailureReason(tc.err); got != tc.want {
			t.Errorf("ProposalFailureReason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestTimedLogStoreKeepsMonotonic: raft-wal is a MonotonicLogStore and
// raft relies on that after installing a snapshot; timing must not hide it.
func TestTimedLogStoreKeepsMonotonic(t *testing.T) {
	noop := func(time.Duration, int, error) {}
	inner := raft.NewInmemStore()
	if s := withStoreTiming(inner, noop).(raft.MonotonicLogStore); s.IsMonotonic() {
		t.Fatal("in-memory store reported monotonic")
	}
	mono := &raft.MockMonotonicLogStore{}
	if !withStoreTiming(mono, noop).(raft.MonotonicLogStore).IsMonotonic() {
		t.Fatal("monotonic store lost its IsMonotonic")
	}
	if withStoreTiming(inner, nil) != raft.LogStore(inner) {
		t.Fatal("no hook: the store should be used as is")
	}
}

// TestBootstrapAfterAPeerReplicatedIsNotAnError: raft runs before a
// static-peers node bootstraps, so a peer that bootstrapped first can
// already have replicated the configuration to it; the bootstrap then
// finds state and must not fail the start (seen under load when the
// third node of a cluster started last).
func TestBootstrapAfterAPeerReplicatedIsNotAnError(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	var peers []Peer
	for _, tn := range c.nodes {
		peers = append(peers, Peer{ID: tn.cfg.NodeID, RaftAddr: tn.cfg.RaftAddr, APIAddr: tn.cfg.APIAddr})
	}
	f := c.followers()[0]
	if err := f.node.bootstrap(peers); err != nil {
		t.Fatalf("bootstrap of a node that already has the cluster's state: %v", err)
	}
	if err := f.node.bootstrap(peers[:1]); err == nil {
		t.Fatal("a single-node bootstrap over existing state must still fail")
	}
}
