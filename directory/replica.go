package directory

import (
	"context"
	"sync"

	"github.com/rookery/rookery/fsm"
)

// Replica is the replication the service sits on: propose, read barrier,
// lookup. *cluster.Node implements it over raft; Local implements it over
// one store, for a single process and for tests.
//
// An error meaning "not now" (no leader, no quorum, shut down, a barrier
// that timed out) wraps ErrUnavailable or the cluster's own
// cluster.ErrUnavailable or cluster.ErrShutdown; the service turns it into
// a KindUnavailable error that front ends answer with "try again".
type Replica interface {
	// Apply proposes cmds and returns one result each once they are
	// committed and applied on this node.
	Apply(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error)
	// ApplyCommitted is Apply without waiting for this node's own apply.
	ApplyCommitted(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error)
	// LinearizableRead returns once the local state includes every write
	// committed before the call.
	LinearizableRead(ctx context.Context) error
	// LinearizableGet is a linearizable read of one name, which a raft
	// follower can have its leader answer instead of waiting to apply.
	LinearizableGet(ctx context.Context, name string) (fsm.Entry, bool, error)
	// WaitRevision returns once the local state has applied rev.
	WaitRevision(ctx context.Context, rev uint64) error
	// CheckReads reports why local reads must not be served at all (a
	// store found damaged), or nil.
	CheckReads() error
}

// State is read-only access to a replica's applied state. *fsm.Store
// implements it; Apply is deliberately absent, so nothing holding a State
// can change the directory without replication.
type State interface {
	View() *fsm.View
	Revision() uint64
	Changed() <-chan struct{}
	EventsSince(from uint64, max int) ([]fsm.Event, error)
	Stats() fsm.Stats
	Snapshot() *fsm.Snapshot
}

var _ State = (*fsm.Store)(nil)

// Local is a Replica on one fsm.Store without replication: every Apply is
// one log entry with the next index. It is a real directory for a single
// process and for tests, not a mock.
type Local struct {
	mu    sync.Mutex
	store *fsm.Store
	index uint64
}

// NewLocal returns a replica applying to store, continuing after the
// store's applied index.
func NewLocal(store *fsm.Store) *Local {
	return &Local{store: store, index: store.AppliedIndex()}
}

// NewLocalService is a service over NewLocal(store).
func NewLocalService(store *fsm.Store) *Service { return NewService(NewLocal(store), store) }

// Apply applies cmds as one entry.
func (l *Local) Apply(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.index++
	return l.store.Apply(l.index, cmds), nil
}

// ApplyCommitted is Apply: committing and applying are one step here.
func (l *Local) ApplyCommitted(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	return l.Apply(ctx, cmds)
}

// LinearizableRead returns at once: one store is up to date with itself.
func (l *Local) LinearizableRead(ctx context.Context) error { return ctx.Err() }

// LinearizableGet reads name from the store.
func (l *Local) LinearizableGet(ctx context.Context, name string) (fsm.Entry, bool, error) {
	if err := ctx.Err(); err != nil {
		return fsm.Entry{}, false, err
	}
	e, ok := l.store.Get(name)
	return e, ok, nil
}

// WaitRevision waits until the store has applied rev.
func (l *Local) WaitRevision(ctx context.Context, rev uint64) error {
	for {
		changed := l.store.Changed()
		if l.store.Revision() >= rev {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// CheckReads is nil: a local store is always readable.
func (l *Local) CheckReads() error { return nil }

// Store is the store, for tests that look at the applied state directly.
func (l *Local) Store() *fsm.Store { return l.store }
