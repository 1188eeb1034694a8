package api

import (
	"context"

	"google.golang.org/grpc"

	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/fsm"
)

// Node is what the API needs from a cluster member. *cluster.Node satisfies
// it; the interface exists so that the API layer states exactly which parts
// of the cluster it relies on.
type Node interface {
	// Store is the node's local state machine; reads from it are stale
	// unless preceded by LinearizableRead.
	Store() *fsm.Store
	// Apply proposes commands (forwarded to the leader when needed).
	Apply(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error)
	// LinearizableRead returns once the local store reflects every write
	// committed before the call.
	LinearizableRead(ctx context.Context) error
	// WaitRevision returns once the local store has applied rev.
	WaitRevision(ctx context.Context, rev uint64) error
	// RegisterPeerService registers the node-to-node service.
	RegisterPeerService(s *grpc.Server)

	IsLeader() bool
	Leader() cluster.Peer
	Status() cluster.Status
	Members(ctx context.Context) ([]cluster.Member, error)
	AddVoter(ctx context.Context, p cluster.Peer) error
	AddNonvoter(ctx context.Context, p cluster.Peer) error
	RemoveServer(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, id string) error

	// Health: active alarms (health answers NOT_SERVING while any is),
	// whether reads are served at all, and the consistency check.
	Alarms() []cluster.Alarm
	CheckReads() error
	CheckConsistency(ctx context.Context) (cluster.ConsistencyReport, error)
}

var _ Node = (*cluster.Node)(nil)
