package mupdatecompat

import (
	"context"
	"errors"
	"sync"

	"github.com/rookery/rookery/fsm"
)

// Directory is what a MUPDATE session needs from the replicated directory.
// The cluster implements it on a raft node; LocalDirectory implements it on
// a single store.
type Directory interface {
	// Apply proposes commands and returns one result each, once they are
	// committed and applied. An error means the outcome is unknown or the
	// directory is unavailable; wrap ErrTemporary for the latter.
	Apply(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error)
	// Sync is a linearizable barrier: when it returns nil, Store includes
	// every write committed before Sync was called.
	Sync(ctx context.Context) error
	// Store is the local applied state: Get, View, EventsSince, Changed.
	Store() *fsm.Store
}

// Finder is an optional Directory extension: a linearizable read of one
// name that can be cheaper than Sync followed by Store().Get, as on a raft
// follower, which can have the leader answer instead of waiting to learn
// the latest commit. FIND uses it when the Directory has it.
type Finder interface {
	Find(ctx context.Context, name string) (e fsm.Entry, found bool, err error)
}

// ErrTemporary marks a directory error as temporary: no quorum, no leader,
// leadership lost, a barrier that timed out. The session answers such an
// error with a NO whose text says to try again, and Cyrus backends report a
// temporary failure. Directory implementations wrap it:
//
//	return nil, fmt.Errorf("%w: %w", mupdatecompat.ErrTemporary, err)
//
// Errors with a `Temporary() bool` method returning true, and context
// deadline errors, are treated the same way.
var ErrTemporary = errors.New("directory temporarily unavailable")

// IsTemporary reports whether err is a temporary directory error.
func IsTemporary(err error) bool {
	if errors.Is(err, ErrTemporary) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// LocalDirectory is a Directory on one fsm.Store without replication: every
// Apply is one log entry with the next index. It is a real directory for a
// single node and for tests, not a mock.
type LocalDirectory struct {
	mu    sync.Mutex
	store *fsm.Store
	index uint64
}

// NewLocalDirectory returns a directory applying to store, continuing after
// the store's applied index.
func NewLocalDirectory(store *fsm.Store) *LocalDirectory {
	return &LocalDirectory{store: store, index: store.AppliedIndex()}
}

// Apply applies cmds as one entry.
func (d *LocalDirectory) Apply(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.index++
	return d.store.Apply(d.index, cmds), nil
}

// Sync returns at once: a single store is always up to date with itself.
func (d *LocalDirectory) Sync(ctx context.Context) error { return ctx.Err() }

// Store returns the store.
func (d *LocalDirectory) Store() *fsm.Store { return d.store }
