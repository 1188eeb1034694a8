package directory

import (
	"context"
	"fmt"
	"time"

	"github.com/rookery/rookery/fsm"
)

// Service is the directory as front ends see it; one per node, shared by
// all of them, safe for concurrent use.
type Service struct {
	r     Replica
	local State
}

// NewService returns the service over r, whose applied state is local:
// NewService(node, node.Store()) on a cluster node.
func NewService(r Replica, local State) *Service { return &Service{r: r, local: local} }

// Caller is who writes, as the front end authenticated them: Name is
// stamped as the issuer (reserved_by), Server binds the writes to that
// Cyrus server (enforced by the state machine on the committed entry), and
// only a Writer may write at all.
type Caller struct {
	Name, Server string
	Writer       bool
}

// Result is one command's outcome: its change's revision, or a *Error.
type Result struct {
	Revision uint64
	Err      error
}

// Bounds of one proposal: large enough that per-entry costs vanish, small
// enough that a forwarded entry stays well under the gRPC message limit
// and one apply holds the store lock for milliseconds at most.
const (
	entryCommands = 4096
	entryBytes    = 1 << 20
)

// Write checks, stamps (Identity, Bound, Time) and proposes cmds in as few
// entries as fit, returning once this node has applied them, so that a
// stale read here sees them. A command failing the checks gets its error
// in its Result and is not proposed. The error is non-nil only when
// nothing was committed; an entry failing after others committed fails its
// commands' Results.
func (s *Service) Write(ctx context.Context, c Caller, cmds ...fsm.Command) ([]Result, error) {
	return s.write(ctx, c, cmds, s.r.Apply)
}

// WriteCommitted is Write returning once committed, for front ends whose
// reads all run a linearizable barrier (MUPDATE): waiting for this node's
// own apply would only add raft's commit-notification delay on a follower.
func (s *Service) WriteCommitted(ctx context.Context, c Caller, cmds ...fsm.Command) ([]Result, error) {
	return s.write(ctx, c, cmds, s.r.ApplyCommitted)
}

func (s *Service) write(ctx context.Context, c Caller, cmds []fsm.Command, apply func(context.Context, []fsm.Command) ([]fsm.Result, error)) ([]Result, error) {
	out := make([]Result, len(cmds))
	now := time.Now().UnixNano()
	ok := make([]fsm.Command, 0, len(cmds))
	slot := make([]int, 0, len(cmds)) // ok[j] answers out[slot[j]]
	for i, cmd := range cmds {
		if out[i].Err = check(c, cmd); out[i].Err == nil {
			cmd.Identity, cmd.Bound, cmd.Time = c.Name, c.Server, now
			ok, slot = append(ok, cmd), append(slot, i)
		}
	}
	for start := 0; start < len(ok); {
		end := entryEnd(ok, start)
		res, err := apply(ctx, ok[start:end])
		if err == nil && len(res) != end-start {
			err = fmt.Errorf("%d results for %d commands", len(res), end-start)
		}
		for j := start; j < len(ok); j++ {
			switch {
			case err != nil && start == 0:
				return nil, replicaError(ok[0].Op, ok[0].Name, err)
			case err != nil:
				out[slot[j]].Err = replicaError(ok[j].Op, ok[j].Name, err)
			case j < end:
				out[slot[j]] = Result{Revision: res[j-start].Revision, Err: resultError(ok[j], res[j-start].Code)}
			}
		}
		if err != nil {
			break
		}
		start = end
	}
	return out, nil
}

// check is everything the proposer decides: readers never write, only
// directory operations pass, fsm.Validate's limits hold. The server
// binding is decided on the committed entry (fsm authorize), not here.
func check(c Caller, cmd fsm.Command) error {
	err := fsm.Validate(cmd)
	switch {
	case !c.Writer:
		return &Error{Kind: KindPermissionDenied, Op: cmd.Op, Name: cmd.Name, Err: ErrReadOnly}
	case err == nil && cmd.Op == fsm.OpSetPeer:
		err = fmt.Errorf("not a directory operation")
	}
	if err != nil {
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

// Consistency says how current a read must be: Linearizable (the default)
// includes every write committed before the read; Stale serves this
// node's applied state as it is, unless the node refuses reads altogether.
type Consistency uint8

const (
	Linearizable Consistency = iota
	Stale
)

// View returns a point-in-time view at the consistency asked for.
func (s *Service) View(ctx context.Context, c Consistency) (*fsm.View, error) {
	err := s.r.CheckReads()
	if c == Linearizable {
		err = s.r.LinearizableRead(ctx)
	}
	if err != nil {
		return nil, replicaError(0, "", err)
	}
	return s.local.View(), nil
}

// Barrier returns once the local state includes every write committed
// before the call, as a stream's NOOP needs.
func (s *Service) Barrier(ctx context.Context) error {
	return replicaError(0, "", s.r.LinearizableRead(ctx))
}

// Get is a linearizable read of one name.
func (s *Service) Get(ctx context.Context, name string) (fsm.Entry, bool, error) {
	e, ok, err := s.r.LinearizableGet(ctx, name)
	return e, ok, replicaError(0, name, err)
}

// WaitRevision returns this node's revision once it has applied rev.
func (s *Service) WaitRevision(ctx context.Context, rev uint64) (uint64, error) {
	err := s.r.WaitRevision(ctx, rev)
	return s.local.Revision(), replicaError(0, "", err)
}

// Current is this node's applied state as it is, unchecked: for continuing
// a listing at a revision already read, and for leader-only work.
func (s *Service) Current() *fsm.View { return s.local.View() }

// Revision is the revision this node has applied.
func (s *Service) Revision() uint64 { return s.local.Revision() }

// Stats counts this node's entries per state and server.
func (s *Service) Stats() fsm.Stats { return s.local.Stats() }

// Snapshot is this node's state now, in the fsm snapshot format.
func (s *Service) Snapshot() *fsm.Snapshot { return s.local.Snapshot() }
