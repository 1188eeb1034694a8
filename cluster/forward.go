package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/rookery/rookery/fsm"
)

// forwarder coalesces a follower's concurrent writes into batches it
// forwards to the leader. It keeps at most MaxProposalsInFlight batches in
// flight, as many as the leader keeps entries: the leader's proposer would
// only queue any more, and each costs a request, a reply and a share of the
// leader's CPU of its own. While all are busy, writes queue and leave in
// the next batch together. With 8 in flight, 16 writers through a follower
// made 1,758–2,178 creates/s and 128 made 4,079–4,695; with 2, 2,111–2,308
// and 5,578–6,840 (NOTES.md, tenth session).
type forwarder struct {
	n     *Node
	ch    chan *proposal
	slots chan struct{}
	// peak is the most batches ever in flight at once.
	peak atomic.Int64
}

func newForwarder(n *Node) *forwarder {
	return &forwarder{n: n, ch: make(chan *proposal, 4096), slots: make(chan struct{}, n.cfg.MaxProposalsInFlight)}
}

// submit forwards cmds to the current leader with other queued writes.
func (f *forwarder) submit(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, uint64, error) {
	return f.n.enqueue(ctx, f.ch, cmds)
}

func (f *forwarder) run() {
	max := f.n.cfg.MaxBatchCommands
	for {
		select {
		case f.slots <- struct{}{}:
		case <-f.n.ctx.Done():
			drainProposals(f.ch)
			return
		}
		var first *proposal
		select {
		case first = <-f.ch:
		case <-f.n.ctx.Done():
			drainProposals(f.ch)
			return
		}
		batch, count := fillBatch(first, f.ch, max)
		if busy := int64(len(f.slots)); busy > f.peak.Load() {
			f.peak.Store(busy) // only this goroutine writes it
		}
		go func() {
			defer func() { <-f.slots }()
			f.send(batch, count)
		}()
	}
}

// send forwards one batch to the leader known now. Without one the batch
// fails as not applied and each caller retries on its own.
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
