package directory

import (
	"context"
	"sync"

	"github.com/rookery/rookery/fsm"
)

// Replica is the replication under the service: propose, read barrier,
// lookup. *cluster.Node implements it over raft, Local over one store.
// Errors meaning "not now" wrap ErrUnavailable or an error whose
// Temporary method reports true (cluster.ErrUnavailable, ErrShutdown).
type Replica interface {
	// Apply proposes cmds and returns their results once committed and
	// applied on this node; ApplyCommitted once committed.
	Apply(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error)
	ApplyCommitted(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error)
	// LinearizableRead returns once the local state includes every write
	// committed before the call.
	LinearizableRead(ctx context.Context) error
	// LinearizableGet reads one name linearizably; a raft follower has its
	// leader answer instead of waiting to apply.
	LinearizableGet(ctx context.Context, name string) (fsm.Entry, bool, error)
	// WaitRevision returns once the local state has applied rev.
	WaitRevision(ctx context.Context, rev uint64) error
	// CheckReads says why local reads must not be served (a damaged
	// store), or nil.
	CheckReads() error
}

// State is read-only access to a replica's applied state (*fsm.Store).
// Apply is deliberately absent: nothing holding a State can change the
// directory without replication.
type State interface {
	View() *fsm.View
	Revision() uint64
	Changed() <-chan struct{}
	EventsSince(from uint64, max int) ([]fsm.Event, error)
	Stats() fsm.Stats
	Snapshot() *fsm.Snapshot
}

// Local is a Replica on one fsm.Store without replication, each Apply one
// log entry: a real directory for one process and for tests.
type Local struct {
	mu    sync.Mutex
	store *fsm.Store
	index uint64
}

// NewLocal returns a replica applying to store after its applied index.
func NewLocal(store *fsm.Store) *Local { return &Local{store: store, index: store.AppliedIndex()} }

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

// ApplyCommitted is Apply: committing is applying here.
func (l *Local) ApplyCommitted(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	return l.Apply(ctx, cmds)
}

// LinearizableRead returns at once: one store is up to date with itself.
func (l *Local) LinearizableRead(ctx context.Context) error { return ctx.Err() }

// LinearizableGet reads name from the store.
func (l *Local) LinearizableGet(ctx context.Context, name string) (fsm.Entry, bool, error) {
	e, ok := l.store.Get(name)
	return e, ok, ctx.Err()
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

// Store is the store, for tests that look at the applied state.
func (l *Local) Store() *fsm.Store { return l.store }
