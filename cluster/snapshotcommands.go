package cluster

import (
	"sync"
	"time"
)

// commandCount counts the directory commands a node applied since its
// last snapshot or restore, and signals due once they reach every (never
// when every is 0). Raft's own threshold counts log entries; this one
// counts what a restart would replay and what grew the store's trees since
// a snapshot last compacted them (Config.SnapshotCommands).
type commandCount struct {
	every uint64
	due   chan struct{} // holds one signal at most

	mu      sync.Mutex
	applied uint64 // since the node started
	covered uint64 // of applied, those in the last snapshot or restore
}

func newCommandCount(every uint64) *commandCount {
	return &commandCount{every: every, due: make(chan struct{}, 1)}
}

// add counts n commands just applied and signals due if a snapshot is due.
func (c *commandCount) add(n int) {
	c.mu.Lock()
	c.applied += uint64(n)
	c.mu.Unlock()
	c.check()
}

// check signals due if the commands not in a snapshot reach every. It
// never blocks: a pending signal already says so.
func (c *commandCount) check() {
	if c.every == 0 || c.pending() < c.every {
		return
	}
	select {
	case c.due <- struct{}{}:
	default:
	}
}

// total is the number of commands applied since the node started; a
// snapshot taken now covers them all.
func (c *commandCount) total() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applied
}

// pending is the number of commands applied since the last snapshot or
// restore.
func (c *commandCount) pending() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applied - c.covered
}

// snapshotted records a stored snapshot that covers the first taken
// commands. Snapshots may finish out of order; the newest counts.
func (c *commandCount) snapshotted(taken uint64) {
	c.mu.Lock()
	c.covered = max(c.covered, taken)
	c.mu.Unlock()
}

// restored records that the store was replaced by a snapshot: nothing
// applied before it is left to replay.
func (c *commandCount) restored() {
	c.mu.Lock()
	c.covered = c.applied
	c.mu.Unlock()
}

// snapshotRetry is how long a node waits before it tries again a snapshot
// that failed.
const snapshotRetry = 30 * time.Second

// compactQuiet is how long applies must pause before a node whose store is
// still due a compaction after its last snapshot takes another for it.
const compactQuiet = time.Second

// snapshotOnCommands snapshots this node each time its state machine has
// applied Config.SnapshotCommands commands since the last snapshot. A
// snapshot also rebuilds the store's trees dense (fsm.Store.CompactionDue),
// unless more changes than the history holds land while it runs, as they
// do during a bulk import; then one more snapshot is taken once applies
// pause for compactQuiet. It runs on its own goroutine, never from inside
// an apply, because raft takes a snapshot through the FSM goroutine; and it
// waits for each snapshot, so it asks for one at a time.
func (n *Node) snapshotOnCommands() {
	count := n.fsm.commands
	quiet := time.NewTicker(compactQuiet)
	quiet.Stop() // runs only while a compaction is owed
	defer quiet.Stop()
	var (
		tick      <-chan time.Time // quiet.C while it runs
		lastTotal uint64
	)
	for {
		var reason string
		select {
		case <-count.due:
			if count.pending() < count.every {
				continue // raft's own threshold or interval snapshotted meanwhile
			}
			reason = "commands applied since the last one reached raft.snapshot_commands"
		case <-tick:
			if total := count.total(); total != lastTotal {
				lastTotal = total
				continue
			}
			reason = "applies paused and the store's trees are due a compaction the last snapshot gave up"
		case <-n.failed:
			return
		case <-n.ctx.Done():
			return
		}
		if !n.snapshotBecause(reason, count.pending()) {
			return
		}
		quiet.Stop()
		tick = nil
		if count.every > 0 && count.pending() > 0 && n.store.CompactionDue() {
			quiet.Reset(compactQuiet)
			tick, lastTotal = quiet.C, count.total()
		}
	}
}

// snapshotBecause takes a snapshot and logs it. A failure is logged and
// retried snapshotRetry later; it reports false once the node stops.
func (n *Node) snapshotBecause(reason string, pending uint64) bool {
	applied, _ := n.fsm.appliedIndex()
	n.logger.Info("taking a snapshot: "+reason, "commands", pending, "applied_index", applied)
	start := time.Now()
	err := n.TakeSnapshot(n.ctx)
	if err == nil {
		n.logger.Info("snapshot taken", "applied_index", applied, "took", time.Since(start).Round(time.Millisecond),
			"compaction_due", n.store.CompactionDue())
		return true
	}
	if n.ctx.Err() != nil {
		return false
	}
	n.logger.Warn("snapshot failed", "reason", reason, "error", err, "retry_in", snapshotRetry)
	select {
	case <-time.After(snapshotRetry):
		n.fsm.commands.check()
		return true
	case <-n.failed:
		return false
	case <-n.ctx.Done():
		return false
	}
}
