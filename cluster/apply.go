package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// errNotLeaderLocal: this node is not the leader, nothing was proposed.
var errNotLeaderLocal = fmt.Errorf("%w: this node is not the leader", errNotApplied)

// Apply runs commands through the cluster from any node and returns one
// result per command. On the leader they are proposed directly; a follower
// forwards them to the leader over gRPC and relays the results. It returns
// once the entry is applied on this node too, so a read here afterwards
// sees the write.
//
// Commands that fail fsm.Validate get CodeInvalid and are not proposed;
// OpSetPeer is reserved to the cluster and also gets CodeInvalid. Without a
// leader or quorum Apply fails within WriteTimeout with an error wrapping
// ErrUnavailable; such a write may or may not have been applied.
func (n *Node) Apply(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	return n.apply(ctx, cmds, true)
}

// ApplyCommitted is Apply without the wait for this node's own state
// machine: it returns as soon as the leader has applied the entry. A
// follower saves up to a heartbeat of latency per write; callers that read
// afterwards must put a barrier (LinearizableRead or WaitApplied) in front
// of the read, as MUPDATE's FIND, LIST and NOOP do anyway.
func (n *Node) ApplyCommitted(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	return n.apply(ctx, cmds, false)
}

func (n *Node) apply(ctx context.Context, cmds []fsm.Command, waitLocal bool) ([]fsm.Result, error) {
	if n.closed.Load() {
		return nil, ErrShutdown
	}
	if len(cmds) == 0 {
		return nil, nil
	}
	ctx, cancel := n.withWriteTimeout(ctx)
	defer cancel()
	if waitLocal {
		ctx = context.WithValue(ctx, awaitLocalKey{}, true)
	}
	results, index, err := n.applyAnywhere(ctx, cmds)
	if err != nil {
		n.proposalFailed(err)
		return nil, err
	}
	if waitLocal && index > 0 {
		if err := n.WaitApplied(ctx, index); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// awaitLocalKey marks the context of a write whose caller waits for this
// node to apply it (Apply, not ApplyCommitted). A follower forwarding it
// asks the leader to push the commit at once (commitpush.go) rather than
// after CommitPushDelay.
type awaitLocalKey struct{}

// applyAnywhere proposes on the leader, wherever it is, retrying while the
// attempt certainly did not reach the log (no leader yet, leader
// unreachable, leadership moving).
func (n *Node) applyAnywhere(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, uint64, error) {
	backoff := n.retryBase
	var last error
	for {
		var (
			results []fsm.Result
			index   uint64
			err     error
		)
		changed := n.leaderSeen.wait()
		if n.raft.State() == raft.Leader {
			results, index, err = n.proposeChecked(ctx, cmds)
		} else if leader := n.Leader(); leader.ID == "" {
			err = fmt.Errorf("%w: no known leader", errNotApplied)
		} else if leader.APIAddr == "" {
			err = fmt.Errorf("%w: no gRPC address known for leader %s", errNotApplied, leader.ID)
		} else {
			results, index, err = n.forwarder.submit(ctx, cmds)
		}
		if err == nil || !errors.Is(err, errNotApplied) {
			return results, index, err
		}
		last = err
		if !n.retryPause(ctx, backoff, changed) {
			return nil, 0, n.ctxError(ctx, "write", last)
		}
		backoff = min(2*backoff, n.retryMax)
	}
}

// proposeChecked validates cmds, proposes the valid ones as one entry and
// merges CodeInvalid results for the rest. Index is 0 when nothing was
// proposed.
func (n *Node) proposeChecked(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, uint64, error) {
	valid := make([]fsm.Command, 0, len(cmds))
	invalid := make([]bool, len(cmds))
	for i, c := range cmds {
		if c.Op == fsm.OpSetPeer || fsm.Validate(c) != nil {
			invalid[i] = true
			continue
		}
		valid = append(valid, c)
	}
	if len(valid) == len(cmds) {
		return n.propose(ctx, cmds)
	}
	var (
		applied []fsm.Result
		index   uint64
	)
	if len(valid) > 0 {
		var err error
		if applied, index, err = n.propose(ctx, valid); err != nil {
			return nil, 0, err
		}
	}
	results := make([]fsm.Result, len(cmds))
	j := 0
	for i := range cmds {
		if invalid[i] {
			results[i] = fsm.Result{Code: fsm.CodeInvalid}
			continue
		}
		results[i] = applied[j]
		j++
	}
	return results, index, nil
}

// proposal is one caller's commands waiting to be proposed.
type proposal struct {
	ctx  context.Context
	cmds []fsm.Command
	done chan proposalResult // buffered: the proposer never blocks on it
	// queued, taken and handed trace the proposal's way to raft: queued
	// for the proposer, taken into a batch, accepted by raft's leader loop.
	queued, taken, handed time.Time
}

type proposalResult struct {
	results []fsm.Result
	index   uint64
	err     error
}

// writeTrace, set in benchmarks, receives each batch of proposals when its
// entry has committed and applied on the leader.
type writeTrace interface {
	committed(batch []*proposal, at time.Time)
}

// propose hands cmds to the proposer and waits for their results. Errors
// wrapping errNotApplied mean the commands certainly did not reach the log.
func (n *Node) propose(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, uint64, error) {
	return n.enqueue(ctx, n.proposer.ch, cmds)
}

// enqueue queues cmds for a batching loop and waits for their results.
func (n *Node) enqueue(ctx context.Context, ch chan<- *proposal, cmds []fsm.Command) ([]fsm.Result, uint64, error) {
	p := &proposal{ctx: ctx, cmds: cmds, done: make(chan proposalResult, 1), queued: time.Now()}
	select {
	case ch <- p:
	case <-ctx.Done():
		return nil, 0, n.ctxError(ctx, "write not proposed", nil)
	case <-n.ctx.Done():
		return nil, 0, ErrShutdown
	}
	select {
	case r := <-p.done:
		return r.results, r.index, r.err
	case <-ctx.Done():
		// Proposed or about to be: the outcome is unknown, never "not applied".
		return nil, 0, fmt.Errorf("%w: write outcome unknown: %w", ErrUnavailable, ctx.Err())
	}
}

// proposer coalesces concurrent proposals into one raft log entry. raft's
// leader loop already group-commits entries into one disk write; packing
// many callers' commands into one entry also divides the per-entry cost
// (encoding, bolt keys, FSM dispatch, replication framing) and lets one
// leader reach far higher write rates. Batches form while earlier entries
// are in flight: at most MaxProposalsInFlight entries are handed to raft
// and not yet committed, and proposals arriving meanwhile queue and leave
// together. Without that cap each entry held only what arrived during one
// leader fsync (about 3 commands at 16 writers), and every entry cost an
// fsync on each node. A batch that starts with fewer writers than recent
// commits answered also waits briefly for the rest (hold).
type proposer struct {
	n     *Node
	ch    chan *proposal
	slots chan struct{} // one per entry proposed and not yet committed

	entries, commands atomic.Uint64 // proposed so far
	// released counts the callers answered since the last batch left:
	// writers likely to send their next command soon (see hold).
	released atomic.Int64
}

func newProposer(n *Node) *proposer {
	return &proposer{n: n, ch: make(chan *proposal, 4096), slots: make(chan struct{}, n.cfg.MaxProposalsInFlight)}
}

func (p *proposer) run() {
	max := p.n.cfg.MaxBatchCommands
	for {
		var first *proposal
		select {
		case first = <-p.ch:
		case <-p.n.ctx.Done():
			p.drain()
			return
		}
		// While every slot is taken, later proposals queue behind first
		// and join its batch.
		select {
		case p.slots <- struct{}{}:
		case <-p.n.ctx.Done():
			first.done <- proposalResult{err: ErrShutdown}
			p.drain()
			return
		}
		answered := int(p.released.Swap(0))
		batch, count := fillBatch(first, p.ch, max)
		if expect := answered - len(batch); expect > 0 && p.n.cfg.GroupCommitHold > 0 {
			batch, count = p.hold(batch, count, expect, max)
		}
		if !p.send(batch, count) {
			<-p.slots
		}
	}
}

// hold keeps a batch open for the writers recent commits have just
// answered, up to expect more proposals, a full batch or GroupCommitHold.
// Those writers send their next command a moment after their reply; the
// first one back finds a slot free, and without the hold it would leave
// alone (or with the few already back), splitting the writers into
// cohorts that each cost an entry, an fsync per node and a replication
// round. One writer never holds: it is the only one answered.
func (p *proposer) hold(batch []*proposal, count, expect, max int) ([]*proposal, int) {
	t := time.NewTimer(p.n.cfg.GroupCommitHold)
	defer t.Stop()
	for range expect {
		if count >= max {
			break
		}
		select {
		case q := <-p.ch:
			batch = append(batch, q)
			count += len(q.cmds)
		case <-t.C:
			return batch, count
		case <-p.n.ctx.Done():
			return batch, count
		}
	}
	return batch, count
}

// fillBatch adds proposals already queued behind first, up to max commands.
func fillBatch(first *proposal, ch <-chan *proposal, max int) ([]*proposal, int) {
	batch := []*proposal{first}
	count := len(first.cmds)
	for count < max {
		select {
		case q := <-ch:
			batch = append(batch, q)
			count += len(q.cmds)
		default:
			return batch, count
		}
	}
	return batch, count
}

// liveProposals drops, with a not-applied answer, the proposals whose
// callers already gave up: they are never sent, so the answer is true.
func liveProposals(batch []*proposal) []*proposal {
	live := batch[:0]
	for _, q := range batch {
		if q.ctx.Err() != nil {
			q.done <- proposalResult{err: fmt.Errorf("%w: caller gave up before proposal", errNotApplied)}
			continue
		}
		live = append(live, q)
	}
	return live
}

// splitResults hands each proposal of a batch its slice of results.
func splitResults(batch []*proposal, results []fsm.Result, index uint64) {
	off := 0
	for _, q := range batch {
		end := off + len(q.cmds)
		if end > len(results) {
			q.done <- proposalResult{err: fmt.Errorf("cluster: %d results for %d commands", len(results), end)}
			continue
		}
		q.done <- proposalResult{results: results[off:end:end], index: index}
		off = end
	}
}

// failAll answers every proposal of a batch with err.
func failAll(batch []*proposal, err error) {
	for _, q := range batch {
		q.done <- proposalResult{err: err}
	}
}

// concat joins a batch's commands in order.
func concat(batch []*proposal, count int) []fsm.Command {
	cmds := make([]fsm.Command, 0, count)
	for _, q := range batch {
		cmds = append(cmds, q.cmds...)
	}
	return cmds
}

// send proposes one batch; callers that already gave up are left out, so
// their commands certainly are not applied. It reports whether an entry
// was proposed (and will release its slot when done).
func (p *proposer) send(batch []*proposal, count int) bool {
	live := liveProposals(batch)
	if len(live) == 0 {
		return false
	}
	taken := time.Now()
	for _, q := range live {
		q.taken = taken
	}
	// The leader's clock at proposal: every node applies the same time.
	cmds := concat(live, count)
	now := time.Now().UnixNano()
	for i := range cmds {
		cmds[i].Time = now
	}
	f := p.n.raft.Apply(fsm.EncodeCommands(cmds), p.n.cfg.WriteTimeout)
	handed := time.Now()
	for _, q := range live {
		q.handed = handed
	}
	p.entries.Add(1)
	p.commands.Add(uint64(len(cmds)))
	go p.complete(f, live)
	return true
}

// complete waits for a proposed entry, frees its slot and hands each
// caller its results.
func (p *proposer) complete(f raft.ApplyFuture, batch []*proposal) {
	err := f.Error()
	p.released.Add(int64(len(batch)))
	<-p.slots
	if err == nil && len(p.ch) == 0 && len(p.slots) == 0 {
		// Nothing follows that would carry the commit to followers.
		p.n.commits.committed(f.Index())
	}
	if t := p.n.cfg.trace; t != nil {
		t.committed(batch, time.Now())
	}
	if err != nil {
		failAll(batch, classifyApplyError(err))
		return
	}
	switch r := f.Response().(type) {
	case []fsm.Result:
		splitResults(batch, r, f.Index())
	case error:
		failAll(batch, r)
	default:
		failAll(batch, fmt.Errorf("cluster: unexpected apply response %T", r))
	}
}

// drain fails proposals still queued at shutdown.
func (p *proposer) drain() { drainProposals(p.ch) }

func drainProposals(ch <-chan *proposal) {
	for {
		select {
		case q := <-ch:
			q.done <- proposalResult{err: ErrShutdown}
		default:
			return
		}
	}
}

// classifyApplyError separates failures where the entry certainly never
// entered the log (safe to retry on another leader) from those where it
// may have (outcome unknown: ErrUnavailable).
func classifyApplyError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader),
		errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", errNotApplied, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: node shut down, write outcome unknown: %w", ErrUnavailable, err)
	default:
		return fmt.Errorf("%w: write outcome unknown: %w", ErrUnavailable, err)
	}
}
