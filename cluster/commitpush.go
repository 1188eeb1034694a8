package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// commitPusher tells followers at once that an entry committed, when no
// later entry is on its way to tell them.
//
// A follower learns the leader's commit index only from the next
// AppendEntries. While writes flow that is the next entry; when they stop,
// hashicorp/raft sends an empty AppendEntries only on its CommitTimeout
// tick, so the last write of a burst reaches a follower's store that much
// later, and everything waiting for it there waits too: a write forwarded
// by the follower (gRPC Apply), LIST, the UPDATE dump, NOOP barriers. raft
// has no call to send that AppendEntries early, so when the proposer goes
// idle the leader sends it itself, over its raft transport: an ordinary
// AppendEntries of the term in which the leader wrote the entry, without
// entries, whose consistency check is that very entry (PrevLogEntry and
// PrevLogTerm) and whose LeaderCommitIndex is its index. A follower that
// holds the entry commits and applies up to it, exactly as raft would on
// the next tick; one that does not (still writing it, or behind) refuses
// and learns the commit from raft as before. A leader that has since been
// deposed speaks for an older term, which followers of a newer one refuse.
//
// A push is four messages at one connection (a request and an answer per
// follower), so the leader first waits CommitPushDelay for the next entry,
// whose own AppendEntries carries the commit, and sends nothing when one
// comes. A follower that waits for the commit asked the leader for
// something first (a read index, or a forwarded write it will apply
// itself); the leader then pushes at once (urgent).
type commitPusher struct {
	n *Node

	mu      sync.Mutex
	pending uint64 // highest committed index to tell followers of; 0 = none
	pushed  uint64 // highest index pushed, or carried by a later entry
	// appended is raft's last index when pending was recorded: an entry
	// after it was appended once pending had committed, so its
	// AppendEntries carries the commit.
	appended uint64
	urgent   bool
	running  bool
	wake     chan struct{} // an urgent request arrived while waiting
}

// committed records that index committed on this leader with nothing
// proposed after it, and starts a push unless one is under way (which
// then pushes the newest index next).
func (c *commitPusher) committed(index uint64) {
	c.note(index, false)
}

// urgentPush records that a follower waits for index to commit on its
// side: it is pushed without CommitPushDelay.
func (c *commitPusher) urgentPush(index uint64) {
	c.note(index, true)
}

func (c *commitPusher) note(index uint64, urgent bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if index <= c.pushed || (index <= c.pending && !urgent) {
		return
	}
	if index > c.pending {
		c.pending = index
		c.appended = c.n.raft.LastIndex()
	}
	if urgent {
		c.urgent = true
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	if !c.running {
		c.running = true
		c.n.goFunc(c.run)
	}
}

func (c *commitPusher) run() {
	for {
		c.mu.Lock()
		index, urgent, appended := c.pending, c.urgent, c.appended
		if index <= c.pushed || c.n.ctx.Err() != nil {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		if !urgent && c.carriedByNextEntry(appended) {
			c.done(index)
			continue
		}
		c.mu.Lock()
		index, c.urgent = c.pending, false
		select {
		case <-c.wake: // this push answers it
		default:
		}
		c.mu.Unlock()
		c.push(index)
		c.done(index)
	}
}

func (c *commitPusher) done(index uint64) {
	c.mu.Lock()
	c.pushed = max(c.pushed, index)
	c.mu.Unlock()
}

// carriedByNextEntry waits up to CommitPushDelay and reports whether an
// entry was appended after appended meanwhile. It returns false at once
// when an urgent push is asked for.
func (c *commitPusher) carriedByNextEntry(appended uint64) bool {
	d := c.n.cfg.CommitPushDelay
	if d < 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.wake:
		return false
	case <-c.n.ctx.Done():
		return false
	}
	return c.n.raft.LastIndex() > appended
}

// pushWait bounds how long a push waits for a follower to acknowledge the
// entry it commits.
const pushWait = 50 * time.Millisecond

// awaitHolding waits, up to pushWait, until early append's tracking shows
// id acknowledged index. A follower the leader's quorum did not wait for
// is often still writing the entry when it commits; pushed at once, it
// would refuse (raft logs a warning for each refusal) and learn the commit
// only from raft's next AppendEntries.
func (c *commitPusher) awaitHolding(id raft.ServerID, index uint64) {
	if e := c.n.early; e != nil {
		ctx, cancel := context.WithTimeout(c.n.ctx, pushWait)
		defer cancel()
		e.waitHolds(ctx, id, index)
	}
}

// push sends the commit of index to every other voter and non-voter, to
// each once it holds the entry or pushWait passed.
func (c *commitPusher) push(index uint64) {
	n := c.n
	var entry raft.Log
	if err := n.storage.logs.GetLog(index, &entry); err != nil {
		return // compacted away already: raft's own AppendEntries will do
	}
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	self := raft.ServerID(n.cfg.NodeID)
	req := raft.AppendEntriesRequest{
		RPCHeader:         n.rpcHeader(),
		Term:              entry.Term,
		PrevLogEntry:      index,
		PrevLogTerm:       entry.Term,
		LeaderCommitIndex: index,
	}
	var wg sync.WaitGroup
	for _, s := range cf.Configuration().Servers {
		if s.ID == self {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.awaitHolding(s.ID, index)
			var resp raft.AppendEntriesResponse
			switch err := n.trans.send(s.ID, s.Address, &req, &resp); {
			case err == nil && resp.Success:
				n.commitPushes.Add(1)
			case err == nil:
				n.commitPushRefusals.Add(1)
			}
		}()
	}
	wg.Wait()
}

// rpcHeader is the header of an RPC this node sends as raft would.
func (n *Node) rpcHeader() raft.RPCHeader {
	self := raft.ServerID(n.cfg.NodeID)
	return raft.RPCHeader{
		ProtocolVersion: raft.ProtocolVersionMax,
		ID:              []byte(self),
		Addr:            n.trans.EncodePeer(self, n.trans.LocalAddr()),
	}
}
