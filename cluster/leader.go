package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// leadership records whether this node, as leader, has applied an entry of
// its own term. Until it has, entries committed by earlier leaders may not
// be applied here yet, so the node must not answer read-index requests
// (Raft thesis §6.4; Consul issues a Barrier for the same reason).
type leadership struct {
	mu        sync.Mutex
	readyTerm uint64
	changed   chan struct{}
}

func (l *leadership) init() { l.changed = make(chan struct{}) }

func (l *leadership) setReady(term uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.readyTerm = term
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *leadership) ready() (uint64, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.readyTerm, l.changed
}

// watchLeadership reacts to this node gaining leadership.
func (n *Node) watchLeadership() {
	for {
		select {
		case isLeader := <-n.raft.LeaderCh():
			if isLeader {
				n.establishLeadership()
			} else if n.lease != nil && !n.IsLeader() {
				// Not when it leads again already (raft reports only the
				// latest change): that term's lease is a new one.
				n.lease.revoke(n.raft.CurrentTerm())
			}
		case <-n.ctx.Done():
			return
		}
	}
}

// establishLeadership commits, in the new term, an entry the store applies:
// the leader's own gRPC address in the peer map. Once it is applied every
// earlier entry is too, so reads may be served; and followers learn where to
// forward. The entry is proposed even when the map already holds the
// address: unlike raft's Barrier or no-op entries it passes through the FSM,
// so a follower that waits for a read index pointing at it sees it applied.
func (n *Node) establishLeadership() {
	term := n.raft.CurrentTerm()
	n.logger.Info("gained leadership", "term", term)
	for n.raft.State() == raft.Leader && n.ctx.Err() == nil {
		ctx, cancel := n.withWriteTimeout(n.ctx)
		_, _, err := n.propose(ctx, []fsm.Command{{Op: fsm.OpSetPeer, Name: n.cfg.NodeID, Location: n.cfg.APIAddr}})
		cancel()
		if err == nil {
			if n.raft.CurrentTerm() == term {
				n.refreshLeaseVoters()
				n.lead.setReady(term)
				n.logger.Info("leadership established", "term", term)
			}
			return
		}
		n.logger.Warn("cannot establish leadership yet", "term", term, "error", err)
		n.sleepCtx(n.ctx, 50*time.Millisecond)
	}
}

// waitLeaderReady returns once this node leads and has established its
// leadership in the current term.
func (n *Node) waitLeaderReady(ctx context.Context) error {
	for {
		if n.raft.State() != raft.Leader {
			return errNotLeaderLocal
		}
		ready, changed := n.lead.ready()
		if ready == n.raft.CurrentTerm() {
			return nil
		}
		select {
		case <-changed:
		case <-time.After(10 * time.Millisecond): // re-check leadership
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ctx.Done():
			return ErrShutdown
		}
	}
}

// heartbeatTracker keeps, on the leader, which followers raft currently
// fails to reach and since when; raft reports only failures and
// recoveries, so a follower not failing is taken as in contact now.
type heartbeatTracker struct {
	mu      sync.Mutex
	failing map[string]time.Time // ID -> last contact
}

func newHeartbeatTracker() *heartbeatTracker {
	return &heartbeatTracker{failing: make(map[string]time.Time)}
}

func (h *heartbeatTracker) lastContact(id string) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, failing := h.failing[id]
	return t, failing
}
