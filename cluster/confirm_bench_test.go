package cluster

import (
	"testing"

	"github.com/hashicorp/raft"
)

// BenchmarkReadConfirmation measures the floor under a linearizable read
// on the leader: the read's own heartbeat round (confirmLeadership, what
// reads use), raft's VerifyLeader (which reads used until early append's
// answers made it count acknowledgements from before the read), and one
// heartbeat RPC to one follower sent directly over the same transport.
//
//	go test ./cluster -run '^$' -bench BenchmarkReadConfirmation -benchtime 3000x
func BenchmarkReadConfirmation(b *testing.B) {
	c := newTestCluster(b, 3, defaultTiming)
	n := c.leader().node
	b.Run("confirmLeadership", func(b *testing.B) {
		term, _ := n.lead.ready()
		for i := 0; i < b.N; i++ {
			if err := n.confirmLeadership(testCtx(b), term); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("VerifyLeader", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := n.raft.VerifyLeader().Error(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one-heartbeat-rpc", func(b *testing.B) {
		f := c.followers()[0]
		self := raft.ServerID(n.cfg.NodeID)
		addr := n.trans.EncodePeer(self, n.trans.LocalAddr())
		req := raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(self), Addr: addr},
			Term:      n.raft.CurrentTerm(),
		}
		for i := 0; i < b.N; i++ {
			var resp raft.AppendEntriesResponse
			if err := n.trans.AppendEntries(raft.ServerID(f.cfg.NodeID), raft.ServerAddress(f.cfg.RaftAddr), &req, &resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}
