package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/rookery/rookery/fsm"
)

// forwarder coalesces a follower's concurrent writes into batches it
// forwards to the leader. It keeps at most MaxProposalsInFlight batches in
// flight to a leader, as many as the leader keeps entries: the leader's
// proposer would only queue any more, and each costs a request, a reply
// and a share of the leader's CPU of its own. While all are busy, writes
// queue and leave in the next batch together. With 8 in flight, 16 writers
// through a follower made 1,758–2,178 creates/s and 128 made 4,079–4,695;
// with 2, 2,111–2,308 and 5,578–6,840 (NOTES.md, tenth session).
//
// Slots are counted per leader: batches that hang at a leader that is
// gone (partitioned away, its answers lost until the write timeout) do not
// hold back writes to its successor.
type forwarder struct {
	n     *Node
	ch    chan *proposal
	slots *leaderSlots
}

func newForwarder(n *Node) *forwarder {
	return &forwarder{n: n, ch: make(chan *proposal, 4096), slots: newLeaderSlots(n.cfg.MaxProposalsInFlight)}
}

// submit forwards cmds to the current leader with other queued writes.
func (f *forwarder) submit(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, uint64, error) {
	return f.n.enqueue(ctx, f.ch, cmds)
}

func (f *forwarder) run() {
	max := f.n.cfg.MaxBatchCommands
	for {
		var first *proposal
		select {
		case first = <-f.ch:
		case <-f.n.ctx.Done():
			drainProposals(f.ch)
			return
		}
		// While the leader's slots are all taken, later writes queue
		// behind first and join its batch.
		addr, ok := f.slots.acquire(f.n.ctx, f.n.Leader, f.n.leaderSeen.wait)
		if !ok {
			first.done <- proposalResult{err: ErrShutdown}
			drainProposals(f.ch)
			return
		}
		batch, count := fillBatch(first, f.ch, max)
		go func() {
			defer f.slots.release(addr)
			f.send(batch, count)
		}()
	}
}

// leaderSlots counts batches in flight by the leader (its gRPC address)
// they went to.
type leaderSlots struct {
	max   int
	freed chan struct{} // a slot was released (buffered, 1)

	mu   sync.Mutex
	busy map[string]int
	peak int // the most in flight to one leader at once
}

func newLeaderSlots(perLeader int) *leaderSlots {
	return &leaderSlots{max: perLeader, freed: make(chan struct{}, 1), busy: map[string]int{}}
}

// acquire takes a slot at the leader known now, waiting while that
// leader's are all taken; a new leader ends the wait. It returns the
// leader's gRPC address the slot is for, or false once ctx ends.
func (s *leaderSlots) acquire(ctx context.Context, leader func() Peer, changed func() <-chan struct{}) (string, bool) {
	for {
		next := changed()
		l := leader()
		s.mu.Lock()
		free := s.busy[l.APIAddr] < s.max
		if free {
			s.busy[l.APIAddr]++
			s.peak = max(s.peak, s.busy[l.APIAddr])
		}
		s.mu.Unlock()
		if free {
			return l.APIAddr, true
		}
		select {
		case <-s.freed:
		case <-next:
		case <-ctx.Done():
			return "", false
		}
	}
}

// release frees a slot taken for the leader at addr.
func (s *leaderSlots) release(addr string) {
	s.mu.Lock()
	if s.busy[addr]--; s.busy[addr] <= 0 {
		delete(s.busy, addr)
	}
	s.mu.Unlock()
	select {
	case s.freed <- struct{}{}:
	default:
	}
}

// peakInFlight is the most batches ever in flight to one leader.
func (s *leaderSlots) peakInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// send forwards one batch to the leader known now. Without one the batch
// fails as not applied and each caller retries on its own. (The leader may
// have changed since the batch's slot was taken; its slot is still
// released under the leader it was taken for.)
func (f *forwarder) send(batch []*proposal, count int) {
	live := liveProposals(batch)
	if len(live) == 0 {
		return
	}
	n := f.n
	leader := n.Leader()
	switch {
	case leader.ID == "":
		failAll(live, fmt.Errorf("%w: no known leader", errNotApplied))
		return
	case leader.ID == n.cfg.NodeID:
		failAll(live, fmt.Errorf("%w: this node became leader", errNotApplied))
		return
	case leader.APIAddr == "":
		failAll(live, fmt.Errorf("%w: no gRPC address known for leader %s", errNotApplied, leader.ID))
		return
	}
	ctx, cancel := n.withWriteTimeout(n.ctx)
	defer cancel()
	await := slices.ContainsFunc(live, func(p *proposal) bool { return p.ctx.Value(awaitLocalKey{}) != nil })
	results, index, err := n.forwards.apply(ctx, leader, concat(live, count), await)
	if err != nil {
		failAll(live, err)
		return
	}
	splitResults(live, results, index)
}
