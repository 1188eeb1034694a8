package directory

import (
	"context"
	"fmt"
	"time"

	"github.com/rookery/rookery/fsm"
)

// Service is the directory as the front ends see it. It is safe for
// concurrent use; build one per node and hand it to every front end.
type Service struct {
	r     Replica
	local State
}

// NewService returns the service over r, whose applied state local is
// (for a cluster node: NewService(node, node.Store())).
func NewService(r Replica, local State) *Service {
	return &Service{r: r, local: local}
}

// Caller is who asks for a write, as the front end authenticated them.
type Caller struct {
	// Name is stamped on the commands (reserved_by, audit).
	Name string
	// Server, when set, binds the writes to that Cyrus server; the state
	// machine enforces it on the committed entry (fsm authorize).
	Server string
	// Writer may write at all; others are refused here.
	Writer bool
}

// Result is the outcome of one command: the revision of its change, or a
// *Error saying why it was refused.
type Result struct {
	Revision uint64
	Err      error
}

// Limits of one proposal: large enough that per-entry costs (encoding,
// fsync, replication framing) vanish, small enough that an entry stays
// well under the gRPC message limit when a follower forwards it and that
// one apply holds the store lock for a few milliseconds at most.
const (
	entryCommands = 4096
	entryBytes    = 1 << 20
)

// Write validates, stamps (Identity, Bound, Time) and proposes cmds, in as
// few entries as fit, and returns once they are applied on this node, so
// that a stale read here sees them. A command that fails validation gets
// its error in its Result and is not proposed. The error is non-nil only
// when nothing was committed; an entry failing after others committed
// fails its commands' Results instead.
func (s *Service) Write(ctx context.Context, c Caller, cmds ...fsm.Command) ([]Result, error) {
	return s.write(ctx, c, cmds, s.r.Apply)
}

// WriteCommitted is Write returning once the commands are committed, not
// waiting for this node's own apply: for front ends whose every read runs
// a linearizable barrier first (MUPDATE), the wait only adds raft's
// commit-notification delay to writes through a follower.
func (s *Service) WriteCommitted(ctx context.Context, c Caller, cmds ...fsm.Command) ([]Result, error) {
	return s.write(ctx, c, cmds, s.r.ApplyCommitted)
}

func (s *Service) write(ctx context.Context, c Caller, cmds []fsm.Command, apply func(context.Context, []fsm.Command) ([]fsm.Result, error)) ([]Result, error) {
	out := make([]Result, len(cmds))
	now := time.Now().UnixNano()
	ok := make([]fsm.Command, 0, len(cmds))
	slot := make([]int, 0, len(cmds)) // ok[j] answers out[slot[j]]
	for i, cmd := range cmds {
		if err := check(c, &cmd); err != nil {
			out[i].Err = err
			continue
		}
		cmd.Identity, cmd.Bound, cmd.Time = c.Name, c.Server, now
		ok = append(ok, cmd)
		slot = append(slot, i)
	}
	for start := 0; start < len(ok); {
		end := entryEnd(ok, start)
		res, err := apply(ctx, ok[start:end])
		if err == nil && len(res) != end-start {
			err = fmt.Errorf("%d results for %d commands", len(res), end-start)
		}
		if err != nil {
			if start == 0 {
				return nil, replicaError(ok[0].Op, ok[0].Name, err)
			}
			for j := start; j < len(ok); j++ {
				out[slot[j]].Err = replicaError(ok[j].Op, ok[j].Name, err)
			}
			return out, nil
		}
		for k, r := range res {
			j := start + k
			out[slot[j]] = Result{Revision: r.Revision, Err: resultError(ok[j], r.Code)}
		}
		start = end
	}
	return out, nil
}

// check decides what the proposer can: readers never write, only
// directory operations are accepted, and fsm.Validate's limits hold. The
// server binding is not decided here but on the committed entry.
func check(c Caller, cmd *fsm.Command) error {
	if !c.Writer {
		return &Error{Kind: KindPermissionDenied, Op: cmd.Op, Name: cmd.Name, Err: ErrReadOnly}
	}
	if cmd.Op == fsm.OpSetPeer {
		return &Error{Kind: KindInvalid, Op: cmd.Op, Name: cmd.Name, Err: fmt.Errorf("invalid %s request: not a directory operation", cmd.Op)}
	}
	if err := fsm.Validate(*cmd); err != nil {
		return &Error{Kind: KindInvalid, Op: cmd.Op, Err: fmt.Errorf("invalid %s request: %w", cmd.Op, err)}
	}
	return nil
}

// entryEnd returns the end of the proposal starting at cmds[start].
func entryEnd(cmds []fsm.Command, start int) int {
	size := 0
	for i := start; i < len(cmds); i++ {
		c := &cmds[i]
		size += 32 + len(c.Name) + len(c.Location) + len(c.ACL) + len(c.Identity) + len(c.Bound)
		if i > start && (i-start >= entryCommands || size > entryBytes) {
			return i
		}
	}
	return len(cmds)
}

// Consistency says how current a read must be.
type Consistency uint8

const (
	// Linearizable reads include every write committed before the read
	// (a read barrier first). The default.
	Linearizable Consistency = iota
	// Stale reads serve this node's applied state as it is, unless the
	// node refuses reads altogether (a damaged store).
	Stale
)

// View returns a point-in-time view of the directory at the consistency
// asked for.
func (s *Service) View(ctx context.Context, c Consistency) (*fsm.View, error) {
	if err := s.ready(ctx, c); err != nil {
		return nil, err
	}
	return s.local.View(), nil
}

func (s *Service) ready(ctx context.Context, c Consistency) error {
	switch c {
	case Linearizable:
		return replicaError(0, "", s.r.LinearizableRead(ctx))
	case Stale:
		return replicaError(0, "", s.r.CheckReads())
	}
	return &Error{Kind: KindInvalid, Err: fmt.Errorf("unknown consistency %d", c)}
}

// Barrier returns once the local state includes every write committed
// before the call: what a stream needs before it says it is up to date.
func (s *Service) Barrier(ctx context.Context) error { return s.ready(ctx, Linearizable) }

// Get is a linearizable read of one name.
func (s *Service) Get(ctx context.Context, name string) (fsm.Entry, bool, error) {
	e, ok, err := s.r.LinearizableGet(ctx, name)
	return e, ok, replicaError(0, name, err)
}

// Current is this node's applied state as it is, without any check: for
// continuing a listing at a revision already read, and for work that runs
// on the leader only (reservation expiry).
func (s *Service) Current() *fsm.View { return s.local.View() }

// Revision is the revision this node has applied.
func (s *Service) Revision() uint64 { return s.local.Revision() }

// WaitRevision returns this node's revision once it has applied rev.
func (s *Service) WaitRevision(ctx context.Context, rev uint64) (uint64, error) {
	if err := s.r.WaitRevision(ctx, rev); err != nil {
		return 0, replicaError(0, "", err)
	}
	return s.local.Revision(), nil
}

// Stats counts this node's entries per state and server.
func (s *Service) Stats() fsm.Stats { return s.local.Stats() }

// Snapshot is this node's state as of now, in the fsm snapshot format.
func (s *Service) Snapshot() *fsm.Snapshot { return s.local.Snapshot() }
