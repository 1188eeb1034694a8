package floor

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
)

// Forwarder is a follower's directory.Replica, the floor of Rookery's
// follower path: writes and read barriers go to the leader over the
// forward link (forward.go), reads are served from the follower's own
// store once it has applied what the leader answered with. Writes are not
// grouped here: each is one request, and the leader's batching groups
// them. Concurrent read barriers share one request, as Rookery's
// followers share a read-index round.
type Forwarder struct {
	store *fsm.Store

	mu       sync.Mutex
	link     *fwdLink      // the leader's forward link; nil before it dials or after it broke
	lost     error         // why the last link broke, nil while one is up
	attached chan struct{} // closed, and replaced, when a link comes up
}

var _ directory.Replica = (*Forwarder)(nil)

func newForwarder(store *fsm.Store) *Forwarder {
	return &Forwarder{store: store, attached: make(chan struct{})}
}

// fwdLink is one forward link as the follower's callers share it.
type fwdLink struct {
	ctx   context.Context // ends, its cause saying why, when the link breaks
	w     fwdWriter
	reads readGroup

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan fwdFrame
}

// ApplyCommitted forwards cmds to the leader and returns its results, not
// waiting for this follower to apply them: MUPDATE's reads all run a
// barrier first (directory.Service.WriteCommitted).
func (f *Forwarder) ApplyCommitted(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	rs, _, err := f.write(ctx, cmds)
	return rs, err
}

// Apply is ApplyCommitted, then waits until this follower has applied the
// batch that carried cmds.
func (f *Forwarder) Apply(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	rs, seq, err := f.write(ctx, cmds)
	if err != nil {
		return nil, err
	}
	return rs, f.waitApplied(ctx, seq)
}

// LinearizableRead asks the leader for its applied index after a read
// barrier and waits until this follower has applied that far.
func (f *Forwarder) LinearizableRead(ctx context.Context) error {
	k, err := f.waitLink(ctx)
	if err != nil {
		return err
	}
	index, err := k.reads.do(ctx, k.readIndex)
	if err != nil {
		return err
	}
	return f.waitApplied(ctx, index)
}

// LinearizableGet reads name locally after LinearizableRead.
func (f *Forwarder) LinearizableGet(ctx context.Context, name string) (fsm.Entry, bool, error) {
	if err := f.LinearizableRead(ctx); err != nil {
		return fsm.Entry{}, false, err
	}
	e, ok := f.store.Get(name)
	return e, ok, nil
}

// WaitRevision waits until this follower's store has applied rev.
func (f *Forwarder) WaitRevision(ctx context.Context, rev uint64) error {
	return waitStore(ctx, f.store, func() bool { return f.store.Revision() >= rev })
}

// CheckReads is nil: the floor has no damaged state to refuse.
func (f *Forwarder) CheckReads() error { return nil }

func (f *Forwarder) waitApplied(ctx context.Context, index uint64) error {
	return waitStore(ctx, f.store, func() bool { return f.store.AppliedIndex() >= index })
}

// write forwards cmds and returns their results and their batch.
func (f *Forwarder) write(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, uint64, error) {
	k, err := f.waitLink(ctx)
	if err != nil {
		return nil, 0, err
	}
	ans, err := k.call(ctx, fwdWrite, fsm.EncodeCommands(cmds))
	if err != nil {
		return nil, 0, err
	}
	rs, err := fsm.DecodeResults(ans.payload)
	if err != nil {
		return nil, 0, fmt.Errorf("floor: the leader's results: %w", err)
	}
	return rs, ans.index, nil
}

// waitLink returns the forward link, waiting for the leader to dial it
// if it has not yet. Once a link has broken, calls fail at once until the
// leader dials again (the floor's leader never does).
func (f *Forwarder) waitLink(ctx context.Context) (*fwdLink, error) {
	for {
		f.mu.Lock()
		k, lost, attached := f.link, f.lost, f.attached
		f.mu.Unlock()
		switch {
		case k != nil:
			return k, nil
		case lost != nil:
			return nil, lost
		}
		select {
		case <-attached:
		case <-ctx.Done():
			return nil, fmt.Errorf("floor: waiting for the leader's forward link: %w", ctx.Err())
		}
	}
}

// serve runs the forward link c, which the leader dialled, until it
// breaks or ctx ends, handing each answer to the call waiting for it.
// When it ends, every waiting call fails with the reason.
func (f *Forwarder) serve(ctx context.Context, c net.Conn) error {
	lctx, cancel := context.WithCancelCause(ctx)
	k := &fwdLink{ctx: lctx, w: fwdWriter{c: c}, pending: map[uint64]chan fwdFrame{}}
	f.mu.Lock()
	f.link, f.lost = k, nil
	close(f.attached)
	f.attached = make(chan struct{})
	f.mu.Unlock()

	err := k.readAnswers(bufio.NewReader(c))
	lost := fmt.Errorf("floor: forward link to the leader lost: %w: %w", directory.ErrUnavailable, err)
	cancel(lost)
	f.mu.Lock()
	if f.link == k {
		f.link, f.lost = nil, lost
	}
	f.mu.Unlock()
	return err
}

// readAnswers hands each answer to its call. An answer nobody waits for
// any more (its caller gave up) is dropped; a frame that is no answer
// ends the link.
func (k *fwdLink) readAnswers(r *bufio.Reader) error {
	for {
		ans, err := readForward(r)
		if err == nil && ans.kind != fwdAnswer && ans.kind != fwdFailed {
			err = fmt.Errorf("floor: forward frame of kind %q is no answer", ans.kind)
		}
		if err != nil {
			return err
		}
		k.mu.Lock()
		ch := k.pending[ans.id]
		delete(k.pending, ans.id)
		k.mu.Unlock()
		if ch != nil {
			ch <- ans
		}
	}
}

// call sends one request and waits for its answer, ctx or the link's end.
func (k *fwdLink) call(ctx context.Context, kind byte, payload []byte) (fwdFrame, error) {
	ch := make(chan fwdFrame, 1)
	k.mu.Lock()
	k.nextID++
	id := k.nextID
	k.pending[id] = ch
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		delete(k.pending, id)
		k.mu.Unlock()
	}()
	// A send blocks at most while the leader's reader, which waits on
	// nothing else, drains the socket; closing the link ends it.
	if err := k.w.send(fwdFrame{id: id, kind: kind, payload: payload}); err != nil {
		return fwdFrame{}, fmt.Errorf("floor: forward to the leader: %w: %w", directory.ErrUnavailable, err)
	}
	select {
	case ans := <-ch:
		if ans.kind == fwdFailed {
			return fwdFrame{}, fmt.Errorf("floor: the leader failed the forwarded request: %s", ans.payload)
		}
		return ans, nil
	case <-ctx.Done():
		return fwdFrame{}, ctx.Err()
	case <-k.ctx.Done():
		return fwdFrame{}, context.Cause(k.ctx)
	}
}

// readIndex is one read barrier at the leader. It belongs to no one
// caller (readGroup shares it), so only the link's end bounds it.
func (k *fwdLink) readIndex() (uint64, error) {
	ans, err := k.call(context.Background(), fwdRead, nil)
	return ans.index, err
}

// readGroup shares read barriers: one is in flight at a time, and every
// read that arrives meanwhile waits for the next, which is sent after it
// arrived and so covers it.
type readGroup struct {
	mu       sync.Mutex
	next     *readRound // the round new readers join, not yet sent
	inFlight bool
}

type readRound struct {
	done  chan struct{}
	index uint64
	err   error
}

// do joins the next round, starting it if none is in flight, and waits
// for its answer or ctx.
func (g *readGroup) do(ctx context.Context, send func() (uint64, error)) (uint64, error) {
	g.mu.Lock()
	if g.next == nil {
		g.next = &readRound{done: make(chan struct{})}
	}
	r := g.next
	if !g.inFlight {
		g.inFlight, g.next = true, nil
		go g.run(r, send)
	}
	g.mu.Unlock()
	select {
	case <-r.done:
		return r.index, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// run sends round r, then each round that gathered readers meanwhile.
func (g *readGroup) run(r *readRound, send func() (uint64, error)) {
	for r != nil {
		r.index, r.err = send()
		close(r.done)
		g.mu.Lock()
		r, g.next = g.next, nil
		g.inFlight = r != nil
		g.mu.Unlock()
	}
}
