package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/freeport"
	"github.com/rookery/rookery/internal/testnode"
)

// testNode is one real node: raft over loopback TCP, bolt files in a temp
// dir, and a gRPC server on 127.0.0.1 serving the Peer service.
type testNode struct {
	cfg  Config
	node *Node
	srv  *grpc.Server
}

func (tn *testNode) stop() {
	if tn.node != nil {
		_ = tn.node.Close()
	}
	if tn.srv != nil {
		tn.srv.Stop()
	}
}

// testLogger sends warnings and errors to the test log until the test ends.
func testLogger(t testing.TB) *slog.Logger { return testnode.Logger(t) }

// testConfig is DefaultConfig with test addresses and a fresh data dir.
// Tests run three nodes in one process on a small machine shared with other
// work, where a 100 ms leader lease occasionally runs out and leadership
// moves mid-test; the lease is stretched to the heartbeat timeout (the most
// raft allows) so tests stay deterministic. Benchmarks use the defaults.
func testConfig(t testing.TB, id string) Config {
	cfg := DefaultConfig()
	cfg.HeartbeatTimeout = 300 * time.Millisecond
	cfg.ElectionTimeout = 300 * time.Millisecond
	cfg.LeaderLeaseTimeout = 300 * time.Millisecond
	cfg.NodeID = id
	cfg.RaftAddr = freeport.Addr(t)
	cfg.APIAddr = freeport.Addr(t)
	cfg.DataDir = t.TempDir()
	cfg.Logger = testLogger(t)
	cfg.RaftSecret = []byte(testRaftSecret)
	return cfg
}

// testRaftSecret is the cluster secret of test clusters: their raft links
// run authenticated and sealed, as production ones do.
const testRaftSecret = "cluster-test-secret-0123456789"

// startNode opens a node and serves its Peer service on cfg.APIAddr.
func startNode(t testing.TB, cfg Config) *testNode {
	t.Helper()
	tn, err := tryStartNode(t, cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.NodeID, err)
	}
	return tn
}

func tryStartNode(t testing.TB, cfg Config) (*testNode, error) {
	lis, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := Open(ctx, cfg)
	if err != nil {
		_ = lis.Close()
		return nil, err
	}
	// As rookeryd does: register the Peer service, then serve.
	srv := grpc.NewServer(PeerServerOptions()...)
	n.RegisterPeerService(srv)
	go func() { _ = srv.Serve(lis) }()
	tn := &testNode{cfg: cfg, node: n, srv: srv}
	t.Cleanup(tn.stop)
	return tn, nil
}

// testCluster is N nodes started from a static peer list.
type testCluster struct {
	t     testing.TB
	nodes []*testNode
}

func newTestCluster(t testing.TB, n int, tweak func(*Config)) *testCluster {
	t.Helper()
	cfgs := make([]Config, n)
	peers := make([]Peer, n)
	for i := range cfgs {
		cfgs[i] = testConfig(t, fmt.Sprintf("n%d", i+1))
		if tweak != nil {
			tweak(&cfgs[i])
		}
		peers[i] = Peer{ID: cfgs[i].NodeID, RaftAddr: cfgs[i].RaftAddr, APIAddr: cfgs[i].APIAddr}
	}
	c := &testCluster{t: t}
	for i := range cfgs {
		cfgs[i].Peers = peers
		c.nodes = append(c.nodes, startNode(t, cfgs[i]))
	}
	c.waitLeader()
	return c
}

// waitLeader waits until exactly one running node leads, has established
// its leadership, and every running node knows it.
func (c *testCluster) waitLeader() *testNode {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if l := c.stableLeader(); l != nil {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no stable leader within 15s")
	return nil
}

func (c *testCluster) stableLeader() *testNode {
	var leader *testNode
	for _, tn := range c.running() {
		if tn.node.IsLeader() {
			if leader != nil {
				return nil
			}
			leader = tn
		}
	}
	if leader == nil {
		return nil
	}
	if ready, _ := leader.node.lead.ready(); ready != leader.node.raft.CurrentTerm() {
		return nil
	}
	for _, tn := range c.running() {
		if l := tn.node.Leader(); l.ID != leader.cfg.NodeID || l.APIAddr == "" {
			return nil
		}
	}
	return leader
}

func (c *testCluster) running() []*testNode {
	var out []*testNode
	for _, tn := range c.nodes {
		if tn.node != nil && !tn.node.closed.Load() {
			out = append(out, tn)
		}
	}
	return out
}

func (c *testCluster) leader() *testNode { return c.waitLeader() }

func (c *testCluster) followers() []*testNode {
	l := c.leader()
	var out []*testNode
	for _, tn := range c.running() {
		if tn != l {
			out = append(out, tn)
		}
	}
	return out
}

// realistic test data, shaped like a Cyrus murder's directory.
func mailboxName(i int) string {
	switch i % 4 {
	case 0:
		return fmt.Sprintf("user.u%07d", i)
	case 1:
		return fmt.Sprintf("example.com!user.u%07d", i)
	case 2:
		return fmt.Sprintf("user.u%07d.Sent", i)
	default:
		return fmt.Sprintf("example.com!user.u%07d.Archive.2025", i)
	}
}

func location(i int) string { return fmt.Sprintf("imap-be%02d!default", i%8) }

func acl(i int) string {
	return fmt.Sprintf("u%07d\tlrswipkxtecdan\tadmin\tlrswipkxtecdan\tanyone\tp\t", i)
}

func activate(i int) fsm.Command {
	return fsm.Command{Op: fsm.OpActivate, Name: mailboxName(i), Location: location(i), ACL: acl(i), Identity: "mupdate-be"}
}

func reserve(name, loc string) fsm.Command {
	return fsm.Command{Op: fsm.OpReserve, Name: name, Location: loc, Identity: "mupdate-be"}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// mustApply applies cmds through n and fails the test on error.
func mustApply(t testing.TB, n *Node, cmds ...fsm.Command) []fsm.Result {
	t.Helper()
	res, err := n.Apply(testCtx(t), cmds)
	if err != nil {
		t.Fatalf("apply on %s: %v", n.ID(), err)
	}
	if len(res) != len(cmds) {
		t.Fatalf("apply on %s: %d results for %d commands", n.ID(), len(res), len(cmds))
	}
	return res
}
