package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// LinearizableRead returns once this node's store reflects every write
// committed before the call, so a read of Store() that follows is
// linearizable.
//
// On the leader: confirm leadership with a heartbeat round (confirmLeadership),
// or in ReadLease by a lease while it holds, then wait until the commit
// index recorded before it is applied; reads are refused until the leader
// has applied an entry of its own term. On a
// follower: ask the leader for that index (Peer.ReadIndex), then wait until
// it is applied here. Concurrent callers share rounds, so the cost is one
// heartbeat round (or RPC) per batch of readers, not per reader. Without a
// leader or quorum it fails within WriteTimeout, wrapping ErrUnavailable.
func (n *Node) LinearizableRead(ctx context.Context) error {
	if n.closed.Load() {
		return ErrShutdown
	}
	if err := n.checkReads(); err != nil {
		return err
	}
	ctx, cancel := n.withWriteTimeout(ctx)
	defer cancel()
	index, err := n.readIndex(ctx)
	if err != nil {
		return err
	}
	return n.WaitApplied(ctx, index)
}

// LinearizableGet is a linearizable read of one name. The leader reads its
// own store after a read-index round. A follower gets a read index (in a
// batch, as LinearizableRead does) and reads locally when it has already
// applied that far, which under steady writes it usually has. Otherwise
// it has the leader answer (Peer.Lookup) rather than wait: a follower
// learns a new commit index only with the next AppendEntries, which when
// writes stop flowing comes on raft's CommitTimeout tick, milliseconds for
// every read that follows a lone write (a backend's ctl_mboxlist -m
// alternates FIND and ACTIVATE). Failure modes are those of
// LinearizableRead.
func (n *Node) LinearizableGet(ctx context.Context, name string) (e fsm.Entry, found bool, err error) {
	if n.closed.Load() {
		return fsm.Entry{}, false, ErrShutdown
	}
	if err := n.checkReads(); err != nil {
		return fsm.Entry{}, false, err
	}
	ctx, cancel := n.withWriteTimeout(ctx)
	defer cancel()
	err = n.retryRead(ctx, func() (err error) {
		if n.raft.State() == raft.Leader {
			e, found, err = n.leaderGet(ctx, name)
		} else {
			e, found, err = n.followerGet(ctx, name)
		}
		return err
	})
	return e, found, err
}

// leaderGet is one LinearizableGet round on the leader.
func (n *Node) leaderGet(ctx context.Context, name string) (fsm.Entry, bool, error) {
	index, err := n.leaderIndex(ctx)
	if err != nil {
		return fsm.Entry{}, false, err
	}
	if err := n.WaitApplied(ctx, index); err != nil {
		return fsm.Entry{}, false, err
	}
	e, found := n.store.Get(name)
	return e, found, nil
}

// followerGet is one LinearizableGet round on a follower: local when it
// has applied the read index already, the leader's answer otherwise.
func (n *Node) followerGet(ctx context.Context, name string) (fsm.Entry, bool, error) {
	index, err := n.followerReads.do(ctx)
	if err != nil {
		return fsm.Entry{}, false, err
	}
	if applied, _ := n.fsm.appliedIndex(); applied >= index {
		e, found := n.store.Get(name)
		return e, found, nil
	}
	leader, err := n.readLeader()
	if err != nil {
		return fsm.Entry{}, false, err
	}
	return n.forwardLookup(ctx, leader, name)
}

// readIndex obtains a read index from whichever node leads, retrying while
// there is no usable leader.
func (n *Node) readIndex(ctx context.Context) (index uint64, err error) {
	err = n.retryRead(ctx, func() error {
		if n.raft.State() == raft.Leader {
			index, err = n.leaderIndex(ctx)
		} else {
			index, err = n.followerReads.do(ctx)
		}
		return err
	})
	return index, err
}

// retryRead runs one read round until it succeeds, the node shuts down or
// ctx ends, backing off while there is no usable leader.
func (n *Node) retryRead(ctx context.Context, round func() error) error {
	backoff := n.retryBase
	var last error
	for {
		changed := n.leaderSeen.wait()
		err := round()
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrShutdown) {
			return err
		}
		if ctx.Err() != nil {
			return n.ctxError(ctx, "linearizable read", last)
		}
		last = err
		if !n.retryPause(ctx, backoff, changed) {
			return n.ctxError(ctx, "linearizable read", last)
		}
		backoff = min(2*backoff, n.retryMax)
	}
}

// leaderReadIndex is one read-index round on the leader.
func (n *Node) leaderReadIndex(ctx context.Context) (uint64, error) {
	if err := n.waitLeaderReady(ctx); err != nil {
		return 0, err
	}
	term, _ := n.lead.ready()
	index := n.raft.CommitIndex()
	if err := n.confirmLeadership(ctx, term); err != nil {
		return 0, err
	}
	return index, nil
}

// followerReadIndex is one read-index round asked of the leader.
func (n *Node) followerReadIndex(ctx context.Context) (uint64, error) {
	leader, err := n.readLeader()
	if err != nil {
		return 0, err
	}
	return n.forwardReadIndex(ctx, leader)
}

// readLeader is the leader a follower sends reads to.
func (n *Node) readLeader() (Peer, error) {
	leader := n.Leader()
	switch {
	case leader.ID == "":
		return Peer{}, errors.New("no known leader")
	case leader.ID == n.cfg.NodeID:
		return Peer{}, errors.New("leadership changing")
	case leader.APIAddr == "":
		return Peer{}, fmt.Errorf("no gRPC address known for leader %s", leader.ID)
	}
	return leader, nil
}

// readBatcher coalesces concurrent read-index requests. A caller joins the
// next round that has not started yet, so the round it waits for begins
// after the caller arrived: the index it yields covers every write
// committed before the call. At most one round runs at a time; callers
// arriving meanwhile form the following round.
type readBatcher struct {
	round func(context.Context) (uint64, error)
	// roundCtx bounds one round independently of any single caller, so a
	// caller giving up early does not fail the others.
	roundCtx func() (context.Context, context.CancelFunc)

	mu      sync.Mutex
	running bool
	next    *readRound
}

type readRound struct {
	done  chan struct{}
	index uint64
	err   error
}

func newReadBatcher(round func(context.Context) (uint64, error), roundCtx func() (context.Context, context.CancelFunc)) *readBatcher {
	return &readBatcher{round: round, roundCtx: roundCtx}
}

// do joins the next round and waits for it.
func (b *readBatcher) do(ctx context.Context) (uint64, error) {
	b.mu.Lock()
	if b.next == nil {
		b.next = &readRound{done: make(chan struct{})}
	}
	r := b.next
	if !b.running {
		b.running = true
		go b.loop()
	}
	b.mu.Unlock()
	select {
	case <-r.done:
		return r.index, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (b *readBatcher) loop() {
	for {
		b.mu.Lock()
		r := b.next
		b.next = nil
		if r == nil {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		ctx, cancel := b.roundCtx()
		r.index, r.err = b.round(ctx)
		cancel()
		close(r.done)
	}
}
