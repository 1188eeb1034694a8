package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// leaderChanges counts the leader changes this node has seen: every time
// raft reports a leader (ID and term) other than the last one it reported.
// The first leader a node learns after starting is not a change; losing a
// leader and getting the same one back in the same term is not either.
// Each change costs Cyrus clients a window of refused writes and restarts
// every UPDATE stream served by a follower, so the count is the figure an
// operator watches (and the one the soak in scripts/soak-leadership.sh
// reports).
type leaderChanges struct {
	mu       sync.Mutex
	lastID   string
	lastTerm uint64
	count    atomic.Uint64
}

// observe records a leader reported by raft in term.
func (c *leaderChanges) observe(id string, term uint64) {
	if id == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastID != "" && (id != c.lastID || term != c.lastTerm) {
		c.count.Add(1)
	}
	c.lastID, c.lastTerm = id, term
}

// LeaderChanges is how many times this node has seen leadership move since
// it started (see Status.LeaderChanges).
func (n *Node) LeaderChanges() uint64 { return n.changes.count.Load() }

// stallTick is how often the stall detector wakes up. Raft's heartbeats go
// out every HeartbeatTimeout/10 (20–30 ms), so 10 ms resolves a stall
// that delays them.
const stallTick = 10 * time.Millisecond

// stallDetector measures how late this process runs a 10 ms timer: the
// time every goroutine of the node (raft's heartbeat and lease timers
// included) may have waited for a CPU, whatever the cause — an overloaded
// machine, a throttled cgroup, a paused VM, a GC pause. A leader that
// stalls longer than LeaderLeaseTimeout steps down on its own clock even
// though its followers were fine, and followers that stall longer than
// HeartbeatTimeout start elections; logging each long stall next to raft's
// "failed to contact quorum" tells an operator that the timeouts, not the
// network, need raising (docs/raft-timeouts.md).
type stallDetector struct {
	warnAt  time.Duration // stalls this long are logged
	longest atomic.Int64  // nanoseconds
	count   atomic.Uint64 // stalls of at least warnAt
}

// run measures stalls until done is closed; warn is called for each stall
// of at least warnAt.
func (d *stallDetector) run(done <-chan struct{}, warn func(stall time.Duration)) {
	t := time.NewTimer(stallTick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			// The channel's value is when the timer fired, not when this
			// goroutine got to run: the stall is measured by the clock now.
			now := time.Now()
			d.record(now.Sub(last)-stallTick, warn)
			last = now
			t.Reset(stallTick)
		}
	}
}

// record accounts one timer lateness.
func (d *stallDetector) record(late time.Duration, warn func(time.Duration)) {
	if late > time.Duration(d.longest.Load()) {
		d.longest.Store(int64(late))
	}
	if late >= d.warnAt {
		d.count.Add(1)
		warn(late)
	}
}

// watchStalls runs the stall detector for the node's lifetime.
func (n *Node) watchStalls() {
	n.stalls.run(n.ctx.Done(), func(stall time.Duration) {
		n.logger.Warn("process stalled: raft timers ran late (CPU starvation, VM pause or GC)",
			"stall", stall.Round(time.Millisecond), "leader_lease_timeout", n.cfg.LeaderLeaseTimeout,
			"heartbeat_timeout", n.cfg.HeartbeatTimeout, "state", n.raft.State().String())
	})
}

// watchObservations follows raft's observations: heartbeat failures and
// recoveries (for the leader's view of its followers) and leader changes.
func (n *Node) watchObservations() {
	for {
		select {
		case o := <-n.obsCh:
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				n.health.mu.Lock()
				n.health.failing[string(d.PeerID)] = d.LastContact
				n.health.mu.Unlock()
			case raft.ResumedHeartbeatObservation:
				n.health.mu.Lock()
				delete(n.health.failing, string(d.PeerID))
				n.health.mu.Unlock()
			case raft.LeaderObservation:
				n.changes.observe(string(d.LeaderID), n.raft.CurrentTerm())
				n.leaderSeen.notify()
			}
		case <-n.ctx.Done():
			return
		}
	}
}

// broadcast wakes every waiter on each event: the channel it hands out is
// closed at the next notify and replaced.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed at the next notify.
func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *broadcast) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// A write or read that found no usable leader tries again after
// retryBackoffBase, doubling up to retryBackoffMax; a leader change ends
// the pause at once.
const (
	retryBackoffBase = 5 * time.Millisecond
	retryBackoffMax  = 100 * time.Millisecond
)

// retryPause waits before the next attempt of a write or read that found
// no usable leader: backoff, or less when raft reports a leader change
// after changed was taken (the new leader is tried at once instead of up
// to a backoff later, which would add to every failover). It reports
// false when ctx or the node ended.
func (n *Node) retryPause(ctx context.Context, backoff time.Duration, changed <-chan struct{}) bool {
	t := time.NewTimer(backoff)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-changed:
		return true
	case <-ctx.Done():
		return false
	case <-n.ctx.Done():
		return false
	}
}
