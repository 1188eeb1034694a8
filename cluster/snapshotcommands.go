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

// snapshotOnCommands snapshots this node each time its state machine has
// applied Config.SnapshotCommands commands since the last snapshot. It runs
// on its own goroutine, never from inside an apply, because raft takes a
// snapshot through the FSM goroutine; and it waits for each snapshot, so it
// asks for one at a time.
func (n *Node) snapshotOnCommands() {
	count := n.fsm.commands
	for {
		select {
		case <-count.due:
		case <-n.failed:
			return
		case <-n.ctx.Done():
			return
		}
		pending := count.pending()
		if pending < count.every {
			continue // raft's own threshold or interval snapshotted meanwhile
		}
		applied, _ := n.fsm.appliedIndex()
		n.logger.Info("taking a snapshot: commands applied since the last one reached raft.snapshot_commands",
			"commands", pending, "snapshot_commands", count.every, "applied_index", applied)
		start := time.Now()
		if err := n.TakeSnapshot(n.ctx); err != nil {
			if n.ctx.Err() != nil {
				return
			}
			n.logger.Warn("snapshot for applied commands failed", "error", err, "retry_in", snapshotRetry)
			select {
			case <-time.After(snapshotRetry):
				count.check()
			case <-n.failed:
				return
			case <-n.ctx.Done():
				return
			}
			continue
		}
		n.logger.Info("snapshot taken for applied commands", "applied_index", applied, "took", time.Since(start).Round(time.Millisecond))
	}
}
