// Package apitest starts real Rookery clusters for tests: N cluster.Node
// processes-in-one (raft over loopback TCP, bolt stores in temp dirs),
// each serving the full gRPC API (api.Server) on 127.0.0.1, exactly as
// rookeryd wires them. Nodes can be stopped, restarted on the same
// addresses and data, and partitioned from clients by stopping them.
package apitest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/rookery/rookery/api"
	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/internal/freeport"
	"github.com/rookery/rookery/internal/testnode"
)

// Options shape a test cluster. Zero values give three nodes with open APIs.
type Options struct {
	Nodes int
	// API returns node i's API config (default api.DefaultConfig()).
	API func(i int) api.Config
	// Cluster adjusts node i's cluster config.
	Cluster func(i int, c *cluster.Config)
	// Prepare runs before any node opens, with the peer list and each
	// node's (empty) data dir: e.g. to seed the dirs from a snapshot.
	Prepare func(peers []cluster.Peer, dataDirs []string) error
}

// Cluster is a running test cluster.
type Cluster struct {
	t     testing.TB
	opts  Options
	Nodes []*Node
}

// Node is one member with its gRPC API.
type Node struct {
	Index   int
	ID      string
	APIAddr string
	cfg     cluster.Config

	mu   sync.Mutex
	node *cluster.Node
	gs   *grpc.Server
}

// Start starts a cluster from a static peer list (as `make run` does) and
// waits until it has a stable leader known to every node. It is torn down
// when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	c := &Cluster{t: t, opts: opts}
	peers := make([]cluster.Peer, opts.Nodes)
	for i := range peers {
		cfg := cluster.DefaultConfig()
		cfg.NodeID = fmt.Sprintf("n%d", i+1)
		cfg.RaftAddr = freeport.Addr(t)
		cfg.APIAddr = freeport.Addr(t)
		cfg.DataDir = t.TempDir()
		cfg.Logger = Logger(t)
		// Raft links authenticated and sealed, as in production.
		cfg.RaftSecret = []byte("apitest-raft-secret-0123456789")
		if opts.Cluster != nil {
			opts.Cluster(i, &cfg)
		}
		peers[i] = cluster.Peer{ID: cfg.NodeID, RaftAddr: cfg.RaftAddr, APIAddr: cfg.APIAddr}
		c.Nodes = append(c.Nodes, &Node{Index: i, ID: cfg.NodeID, APIAddr: cfg.APIAddr, cfg: cfg})
	}
	t.Cleanup(c.Close)
	if opts.Prepare != nil {
		dirs := make([]string, len(c.Nodes))
		for i, n := range c.Nodes {
			dirs[i] = n.cfg.DataDir
		}
		if err := opts.Prepare(peers, dirs); err != nil {
			t.Fatalf("apitest: prepare: %v", err)
		}
	}
	// Open every node concurrently: with a static list no node can elect a
	// leader alone.
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, n := range c.Nodes {
		n.cfg.Peers = peers
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.start(n)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("apitest: start %s: %v", c.Nodes[i].ID, err)
		}
	}
	c.WaitLeader()
	return c
}

func (c *Cluster) start(n *Node) error {
	lis, err := net.Listen("tcp", n.APIAddr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, err := cluster.Open(ctx, n.cfg)
	if err != nil {
		lis.Close()
		return err
	}
	acfg := api.DefaultConfig()
	if c.opts.API != nil {
		acfg = c.opts.API(n.Index)
	}
	srv, err := api.NewServer(acfg, node, directory.NewService(node, node.Store()), n.cfg.Logger)
	if err != nil {
		node.Close()
		lis.Close()
		return err
	}
	gs := srv.NewGRPCServer(cluster.PeerServerOptions()...) // as rookeryd does
	go gs.Serve(lis)
	n.mu.Lock()
	n.node, n.gs = node, gs
	n.mu.Unlock()
	return nil
}

// Node returns the running cluster node, nil while stopped.
func (n *Node) Node() *cluster.Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.node
}

// Stop stops node i: its gRPC server (closing every stream at once, as a
// crash would) and its raft node. Data stays for Restart.
func (c *Cluster) Stop(i int) {
	n := c.Nodes[i]
	n.mu.Lock()
	node, gs := n.node, n.gs
	n.node, n.gs = nil, nil
	n.mu.Unlock()
	if gs != nil {
		gs.Stop()
	}
	if node != nil {
		node.Close()
	}
}

// Restart starts a stopped node again on the same addresses and data.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	var err error
	// The old listener's port may linger briefly; retry.
	for attempt := 0; attempt < 50; attempt++ {
		if err = c.start(c.Nodes[i]); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("apitest: restart %s: %v", c.Nodes[i].ID, err)
}

// Wipe stops node i, empties its data directory and forgets its peer
// list, so that Restart starts it bare: it waits to be added, as a node
// being re-seeded does.
func (c *Cluster) Wipe(i int) {
	c.t.Helper()
	c.Stop(i)
	n := c.Nodes[i]
	if err := os.RemoveAll(n.cfg.DataDir); err != nil {
		c.t.Fatalf("apitest: wipe %s: %v", n.ID, err)
	}
	if err := os.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
		c.t.Fatalf("apitest: wipe %s: %v", n.ID, err)
	}
	n.cfg.Peers = nil
}

// Close stops every node.
func (c *Cluster) Close() {
	for i := range c.Nodes {
		c.Stop(i)
	}
}

// Endpoints returns every node's gRPC address.
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.APIAddr
	}
	return out
}

// WaitLeader waits until one running node leads, can serve linearizable
// reads (it has applied an entry of its term), and every running node
// knows it; it returns the leader's index.
func (c *Cluster) WaitLeader() int {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if i := c.stableLeader(); i >= 0 {
			return i
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("apitest: no stable leader within 20s")
	return -1
}

func (c *Cluster) stableLeader() int {
	leader := -1
	for i, n := range c.Nodes {
		if node := n.Node(); node != nil && node.IsLeader() {
			if leader >= 0 {
				return -1
			}
			leader = i
		}
	}
	if leader < 0 {
		return -1
	}
	for _, n := range c.Nodes {
		node := n.Node()
		if node == nil {
			continue
		}
		if l := node.Leader(); l.ID != c.Nodes[leader].ID || l.APIAddr == "" {
			return -1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.Nodes[leader].Node().LinearizableRead(ctx); err != nil {
		return -1
	}
	return leader
}

// Follower returns the index of a running node that does not lead.
func (c *Cluster) Follower() int {
	l := c.WaitLeader()
	for i, n := range c.Nodes {
		if i != l && n.Node() != nil {
			return i
		}
	}
	c.t.Fatalf("apitest: no running follower")
	return -1
}

// Logger logs warnings and errors to the test log (everything with
// ROOKERY_TEST_DEBUG=1) until the test ends.
func Logger(t testing.TB) *slog.Logger { return testnode.Logger(t) }
