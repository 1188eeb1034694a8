package cluster

import (
	"context"
	"fmt"
	"slices"

	"github.com/rookery/rookery/fsm"
)

// forwarderInFlight bounds a follower's concurrent Peer.Apply calls. While
// all are busy, writes queue and leave in the next call together, so a busy
// follower sends a few large RPCs instead of one per write.
const forwarderInFlight = 8

// forwarder coalesces a follower's concurrent writes into Peer.Apply calls
// to the leader.
type forwarder struct {
	n     *Node
	ch    chan *proposal
	slots chan struct{}
}

func newForwarder(n *Node) *forwarder {
	return &forwarder{n: n, ch: make(chan *proposal, 4096), slots: make(chan struct{}, forwarderInFlight)}
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
