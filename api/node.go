package api

import (
	"context"

	"google.golang.org/grpc"

	"github.com/rookery/rookery/cluster"
)

// Node is what the Cluster and health services need from a cluster
// member; directory reads and writes go through the directory service.
// *cluster.Node satisfies it.
type Node interface {
	// RegisterPeerService registers the node-to-node service.
	RegisterPeerService(s *grpc.Server)

	Leader() cluster.Peer
	Status() cluster.Status
	Members(ctx context.Context) ([]cluster.Member, error)
	AddVoter(ctx context.Context, p cluster.Peer) error
	AddNonvoter(ctx context.Context, p cluster.Peer) error
	RemoveServer(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, id string) error

	// Health: active alarms (health answers NOT_SERVING while any is) and
	// the consistency check.
	Alarms() []cluster.Alarm
	CheckConsistency(ctx context.Context) (cluster.ConsistencyReport, error)
}

var _ Node = (*cluster.Node)(nil)
