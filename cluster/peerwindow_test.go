package cluster

import (
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/h2watch"
)

// TestForwardedWritesCostNoFlowControlPings: a follower's forwarded writes
// travel with fixed flow-control windows, so neither side answers a
// message with a bandwidth-probe PING. gRPC's default (a probe per message
// received) sent one each way for nearly every write: two extra wake-ups
// of each process per write through a follower.
func TestForwardedWritesCostNoFlowControlPings(t *testing.T) {
	var pings h2watch.Pings
	t.Cleanup(pings.Wait) // after the cluster's own cleanups close its connections
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.PeerDialOptions = []grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(pings.Dial),
		}
	})
	f := c.followers()[0]
	ctx := testCtx(t)
	const writes = 40
	writeOne := func(i int) {
		res, err := f.node.ApplyCommitted(ctx, []fsm.Command{activate(i)})
		if err != nil || res[0].Code != fsm.CodeOK {
			t.Fatalf("write %d through %s: %v %v", i, f.cfg.NodeID, res, err)
		}
	}
	writeOne(0) // opens the apply stream
	sent0, received0 := pings.Sent(), pings.Received()
	for i := 1; i <= writes; i++ {
		writeOne(i)
	}
	sent, received := pings.Sent()-sent0, pings.Received()-received0
	if sent > 1 || received > 1 {
		t.Errorf("%d forwarded writes cost %d PINGs from the follower and %d from the leader, want none", writes, sent, received)
	}
}
