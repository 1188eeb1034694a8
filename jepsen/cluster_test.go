package jepsen

import (
	"context"
	"testing"
	"time"

	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

func startTestCluster(t *testing.T, nodes int) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts rookeryd processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := StartCluster(ctx, ClusterConfig{
		Binary: rookerydBinary(t), Dir: t.TempDir(), Nodes: nodes, WriteTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestIsolatingTheLeaderThroughItsProxiesElectsAnother proves the peers
// really talk through the proxies: cutting the leader's links there makes
// the majority elect a new leader, and healing brings the old one back as
// a follower with every write.
func TestIsolatingTheLeaderThroughItsProxiesElectsAnother(t *testing.T) {
	c := startTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	old, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var others []string
	for i, n := range c.Nodes {
		if i != old {
			others = append(others, n.ID)
		}
	}
	c.Net.Partition([][]string{{c.Nodes[old].ID}, others}, Blackhole)

	var leader int
	for {
		leader = -1
		for i := range c.Nodes {
			if i == old {
				continue
			}
			if st, err := c.Status(ctx, i); err == nil && st.GetState() == "Leader" {
				leader = i
			}
		}
		if leader >= 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no new leader while %s is isolated: %v", c.Nodes[old].ID, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	resp, err := c.DirectoryClient(leader).Activate(wctx, &rookeryv1.ActivateRequest{Name: "user.iso", Location: "be1!default", Acl: "a\tl\t"})
	wcancel()
	if err != nil {
		t.Fatalf("write on the new leader %s: %v", c.Nodes[leader].ID, err)
	}
	// The isolated node cannot serve a linearizable read of it.
	rctx, rcancel := context.WithTimeout(ctx, 8*time.Second)
	_, err = c.DirectoryClient(old).Get(rctx, &rookeryv1.GetRequest{Name: "user.iso"})
	rcancel()
	if err == nil {
		t.Fatal("the isolated old leader served a linearizable read")
	}

	c.Net.Heal()
	rev, err := c.WaitConverged(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rev < resp.GetRevision() {
		t.Fatalf("converged at revision %d, below the write's %d", rev, resp.GetRevision())
	}
	got, err := c.DirectoryClient(old).Get(ctx, &rookeryv1.GetRequest{Name: "user.iso"})
	if err != nil || got.GetMailbox().GetLocation() != "be1!default" {
		t.Fatalf("old leader after healing: %v, %v", got, err)
	}
}
