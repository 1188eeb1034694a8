package jepsen

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rookery/rookery/internal/freeport"
	"github.com/rookery/rookery/internal/testcluster"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// ClusterConfig configures the rookeryd processes of a run.
type ClusterConfig struct {
	// Binary is the rookeryd executable.
	Binary string
	// Dir holds every node's data directory and log.
	Dir   string
	Nodes int
	// Passed to every node: a short write timeout keeps operations that
	// cannot reach a quorum from piling up; frequent snapshots with few
	// trailing logs make restarted and re-added nodes catch up through
	// InstallSnapshot, under faults.
	WriteTimeout      time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotInterval  time.Duration
	// LogStore is raft.log_store ("bolt" or "wal"); empty keeps rookeryd's
	// default.
	LogStore string
	// ReadMode is raft.read_mode ("linearizable" or "lease"); empty keeps
	// rookeryd's default.
	ReadMode string
	// Direct has the nodes reach each other on their real ports instead of
	// through the proxies: no network faults, and no per-connection cost of
	// the proxies' process lookup (which falls behind when many
	// connections open at once, as after kill -9 of every node).
	Direct    bool
	ExtraArgs []string
	Logger    *slog.Logger
}

// Node is one rookeryd process and the proxies in front of it. Peers reach
// its raft port and its gRPC port (forwarded writes, read index) only
// through the proxies; clients talk to the real ports directly, as backends
// on the same LAN segment would while the nodes are partitioned from each
// other.
type Node struct {
	testcluster.Spec // the real addresses, bound by the node
	RaftProxy        *Proxy
	GRPCProxy        *Proxy

	mu      sync.Mutex
	proc    *testcluster.Process
	paused  bool
	removed bool // out of the raft configuration
	bare    bool // (re)started without a peer list: waits to be added
	conn    *grpc.ClientConn
}

// Cluster is the set of nodes of one run.
type Cluster struct {
	cfg      ClusterConfig
	Nodes    []*Node
	Net      *Net
	owners   *Owners
	User     string
	Password string
	peers    string
	secret   string
	users    string
	ports    []*freeport.Ports
}

// tokenCreds sends the bearer token the users file accepts; plaintext is
// fine on loopback.
type tokenCreds string

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return false }

// StartCluster starts every node and waits for a leader.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{cfg: cfg, Net: NewNet(), owners: NewOwners(), User: "jepsen", Password: rand.Text()}
	if err := c.writeAuth(); err != nil {
		return nil, err
	}
	var peers []string
	for i := 0; i < cfg.Nodes; i++ {
		n, err := c.newNode(i)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
		raftAddr, grpcAddr := n.RaftProxy.Addr(), n.GRPCProxy.Addr()
		if cfg.Direct {
			raftAddr, grpcAddr = n.RaftAddr, n.GRPCAddr
		}
		peers = append(peers, fmt.Sprintf("%s=%s/%s", n.ID, raftAddr, grpcAddr))
	}
	c.peers = strings.Join(peers, ",")
	for i := range c.Nodes {
		if err := c.Start(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// writeAuth writes the users file (one writer identity, bcrypt) and the
// cluster secret nodes use with each other.
func (c *Cluster) writeAuth() error {
	if err := os.MkdirAll(c.cfg.Dir, 0o755); err != nil {
		return err
	}
	c.users = filepath.Join(c.cfg.Dir, "users")
	if err := testcluster.WriteUsers(c.users, map[string]string{c.User: c.Password}); err != nil {
		return err
	}
	c.secret = filepath.Join(c.cfg.Dir, "cluster-secret")
	return os.WriteFile(c.secret, []byte(rand.Text()+"\n"), 0o600)
}

func (c *Cluster) newNode(i int) (*Node, error) {
	ports, err := freeport.Take(3)
	if err != nil {
		return nil, err
	}
	c.ports = append(c.ports, ports)
	addrs, id := ports.Addrs(), "n"+strconv.Itoa(i+1)
	n := &Node{Spec: testcluster.Spec{ID: id, RaftAddr: addrs[0], GRPCAddr: addrs[1], MupdateAddr: addrs[2],
		DataDir: filepath.Join(c.cfg.Dir, id, "data"), LogPath: filepath.Join(c.cfg.Dir, id+".log")}}
	if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
		return nil, err
	}
	pc := ProxyConfig{Node: n.ID, Net: c.Net, Identify: c.owners.Identify, Logger: c.cfg.Logger}
	pc.Target = n.RaftAddr
	if n.RaftProxy, err = NewProxy(pc); err != nil {
		return nil, err
	}
	pc.Target = n.GRPCAddr
	if n.GRPCProxy, err = NewProxy(pc); err != nil {
		n.RaftProxy.Close()
		return nil, err
	}
	n.conn, err = grpc.NewClient("passthrough:///"+n.GRPCAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(tokenCreds(c.User+":"+c.Password)))
	if err != nil {
		n.RaftProxy.Close()
		n.GRPCProxy.Close()
		return nil, err
	}
	return n, nil
}

// Token is the gRPC bearer token of the run's identity.
func (c *Cluster) Token() string { return c.User + ":" + c.Password }

func (c *Cluster) args(n *Node) []string {
	args := append(n.Args(c.secret, c.users, []string{c.User}), "-grpc.advertise", c.advertisedGRPC(n), "-log.level", "info")
	if !n.bare {
		args = append(args, "-raft.peers", c.peers)
	}
	if c.cfg.WriteTimeout > 0 {
		args = append(args, "-raft.write_timeout", c.cfg.WriteTimeout.String())
	}
	if c.cfg.SnapshotThreshold > 0 {
		args = append(args, "-raft.snapshot_threshold", strconv.FormatUint(c.cfg.SnapshotThreshold, 10))
	}
	if c.cfg.TrailingLogs > 0 {
		args = append(args, "-raft.trailing_logs", strconv.FormatUint(c.cfg.TrailingLogs, 10))
	}
	if c.cfg.SnapshotInterval > 0 {
		args = append(args, "-raft.snapshot_interval", c.cfg.SnapshotInterval.String())
	}
	if c.cfg.LogStore != "" {
		args = append(args, "-raft.log_store", c.cfg.LogStore)
	}
	if c.cfg.ReadMode != "" {
		args = append(args, "-raft.read_mode", c.cfg.ReadMode)
	}
	return append(args, c.cfg.ExtraArgs...)
}

// advertisedGRPC is the gRPC address peers are told: the proxy's, or the
// real one with Direct.
func (c *Cluster) advertisedGRPC(n *Node) string {
	if c.cfg.Direct {
		return n.GRPCAddr
	}
	return n.GRPCProxy.Addr()
}

// Start launches node i (again) on its data directory.
func (c *Cluster) Start(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc.Running() {
		return fmt.Errorf("jepsen: %s is already running", n.ID)
	}
	p, err := testcluster.StartProcess(c.cfg.Binary, c.args(n), n.LogPath)
	if err != nil {
		return fmt.Errorf("jepsen: %s: %w", n.ID, err)
	}
	c.owners.Set(p.Pid(), n.ID)
	go func() { <-p.Done(); c.owners.Remove(p.Pid()) }()
	n.proc, n.paused = p, false
	c.cfg.Logger.Info("node started", "node", n.ID, "pid", p.Pid())
	return nil
}

// Running reports whether node i's process is alive (paused counts).
func (c *Cluster) Running(i int) bool {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc.Running()
}

// Available reports whether node i runs, is not paused and is a member.
func (c *Cluster) Available(i int) bool {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc.Running() && !n.paused && !n.removed
}

// Kill sends SIGKILL to node i and waits for it to die.
func (c *Cluster) Kill(i int) error { return c.stop(i, syscall.SIGKILL, 10*time.Second) }

// Terminate stops node i gracefully (SIGTERM), killing it after 10 s.
func (c *Cluster) Terminate(i int) error {
	_ = c.Resume(i)
	if err := c.stop(i, syscall.SIGTERM, 10*time.Second); err != nil {
		return c.Kill(i)
	}
	return nil
}

func (c *Cluster) stop(i int, sig syscall.Signal, wait time.Duration) error {
	n := c.Nodes[i]
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if err := p.Stop(sig, wait); err != nil {
		return fmt.Errorf("jepsen: %s: %w", n.ID, err)
	}
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
	return nil
}

// Pause sends SIGSTOP to node i.
func (c *Cluster) Pause(i int) error { return c.signal(i, syscall.SIGSTOP, true) }

// Resume sends SIGCONT to node i.
func (c *Cluster) Resume(i int) error { return c.signal(i, syscall.SIGCONT, false) }

func (c *Cluster) signal(i int, sig syscall.Signal, paused bool) error {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.proc.Running() {
		return fmt.Errorf("jepsen: %s is not running", n.ID)
	}
	if err := n.proc.Signal(sig); err != nil {
		return fmt.Errorf("jepsen: %s: %w", n.ID, err)
	}
	n.paused = paused
	return nil
}

// Paused reports whether node i is stopped with SIGSTOP.
func (c *Cluster) Paused(i int) bool {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

// Removed reports whether node i is out of the raft configuration.
func (c *Cluster) Removed(i int) bool {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.removed
}

// ClusterClient is node i's Cluster service.
func (c *Cluster) ClusterClient(i int) rookeryv1.ClusterClient {
	return rookeryv1.NewClusterClient(c.Nodes[i].conn)
}

// DirectoryClient is node i's Directory service on the run's admin
// connection.
func (c *Cluster) DirectoryClient(i int) rookeryv1.DirectoryClient {
	return rookeryv1.NewDirectoryClient(c.Nodes[i].conn)
}

// Status asks node i for its status within one second.
func (c *Cluster) Status(ctx context.Context, i int) (*rookeryv1.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return c.ClusterClient(i).Status(ctx, &rookeryv1.StatusRequest{})
}

// statuses asks every available node at once.
func (c *Cluster) statuses(ctx context.Context) []*rookeryv1.StatusResponse {
	out := make([]*rookeryv1.StatusResponse, len(c.Nodes))
	var wg sync.WaitGroup
	for i := range c.Nodes {
		if !c.Available(i) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st, err := c.Status(ctx, i); err == nil {
				out[i] = st
			}
		}()
	}
	wg.Wait()
	return out
}

// Leader returns the index of the node that says it leads with the highest
// term, or -1.
func (c *Cluster) Leader(ctx context.Context) int {
	best, term := -1, uint64(0)
	for i, st := range c.statuses(ctx) {
		if st != nil && st.GetState() == "Leader" && st.GetTerm() >= term {
			best, term = i, st.GetTerm()
		}
	}
	return best
}

// WaitLeader waits until every available member agrees on one leader.
func (c *Cluster) WaitLeader(ctx context.Context) (int, error) {
	ids := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		ids[i] = n.ID
	}
	return testcluster.AwaitLeader(ctx, ids, func(ctx context.Context) ([]*rookeryv1.StatusResponse, error) {
		sts := c.statuses(ctx)
		for i, st := range sts {
			if st == nil && c.Available(i) {
				return nil, fmt.Errorf("%s does not answer", ids[i])
			}
		}
		return sts, nil
	})
}

// WaitConverged waits until every member runs, agrees on the leader and
// has applied the same revision, twice in a row, and returns that
// revision.
func (c *Cluster) WaitConverged(ctx context.Context) (uint64, error) {
	var last uint64
	stable := 0
	var why string
	for {
		sts := c.statuses(ctx)
		rev, leader, ok := uint64(0), "", true
		for i, st := range sts {
			if c.Removed(i) {
				continue
			}
			switch {
			case st == nil:
				ok, why = false, c.Nodes[i].ID+" does not answer"
			case st.GetLeaderId() == "" || (leader != "" && st.GetLeaderId() != leader):
				ok, why = false, c.Nodes[i].ID+" does not agree on the leader"
			case leader != "" && st.GetRevision() != rev:
				ok, why = false, fmt.Sprintf("%s is at revision %d, others at %d", c.Nodes[i].ID, st.GetRevision(), rev)
			}
			if !ok {
				break
			}
			leader, rev = st.GetLeaderId(), st.GetRevision()
		}
		if ok && rev == last {
			stable++
			if stable >= 2 {
				return rev, nil
			}
		} else {
			stable = 0
		}
		last = rev
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("jepsen: cluster did not converge (%s): %w", why, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// onLeader runs f against the current leader, retrying while leadership
// moves, until ctx ends.
func (c *Cluster) onLeader(ctx context.Context, what string, f func(ctx context.Context, leader int) error) error {
	var last error
	for {
		if l := c.Leader(ctx); l >= 0 {
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			last = f(actx, l)
			cancel()
			if last == nil {
				return nil
			}
		} else {
			last = errors.New("no leader")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("jepsen: %s: %w (last error: %v)", what, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TransferLeadership asks the leader to hand over to node to (-1: raft
// picks).
func (c *Cluster) TransferLeadership(ctx context.Context, to int) error {
	l := c.Leader(ctx)
	if l < 0 {
		return errors.New("jepsen: no leader to transfer from")
	}
	id := ""
	if to >= 0 {
		id = c.Nodes[to].ID
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.ClusterClient(l).TransferLeadership(ctx, &rookeryv1.TransferLeadershipRequest{Id: id})
	return err
}

// RemoveNode takes node i out of the raft configuration, kills it and
// wipes its data: it will come back as a new, empty member.
func (c *Cluster) RemoveNode(ctx context.Context, i int) error {
	id := c.Nodes[i].ID
	err := c.onLeader(ctx, "remove "+id, func(ctx context.Context, l int) error {
		_, err := c.ClusterClient(l).RemoveServer(ctx, &rookeryv1.RemoveServerRequest{Id: id})
		return err
	})
	if err != nil {
		return err
	}
	return c.wipe(i)
}

// wipe marks node i removed, kills it and empties its data directory, so
// that it can only come back by being added again.
func (c *Cluster) wipe(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	n.removed = true
	n.mu.Unlock()
	if err := c.Kill(i); err != nil {
		return err
	}
	if err := os.RemoveAll(n.DataDir); err != nil {
		return err
	}
	return os.MkdirAll(n.DataDir, 0o755)
}

// AddNode starts a removed node empty, without a peer list, and has the
// leader add it as a voter at its proxy addresses.
func (c *Cluster) AddNode(ctx context.Context, i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	n.bare = true
	n.mu.Unlock()
	if !c.Running(i) {
		if err := c.Start(i); err != nil {
			return err
		}
	}
	err := c.onLeader(ctx, "add "+n.ID, func(ctx context.Context, l int) error {
		_, err := c.ClusterClient(l).AddVoter(ctx, &rookeryv1.AddMemberRequest{
			Id: n.ID, RaftAddress: n.RaftProxy.Addr(), ApiAddress: n.GRPCProxy.Addr(),
		})
		return err
	})
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.removed = false
	n.mu.Unlock()
	return nil
}

// HealAll undoes every fault: links pass, paused nodes continue, killed
// nodes restart and removed nodes are added back.
func (c *Cluster) HealAll(ctx context.Context) error {
	c.Net.Heal()
	var errs []error
	for i := range c.Nodes {
		if c.Paused(i) {
			errs = append(errs, c.Resume(i))
		}
	}
	for i := range c.Nodes {
		if !c.Removed(i) && !c.Running(i) {
			errs = append(errs, c.Start(i))
		}
	}
	errs = append(errs, c.reconcileMembers(ctx))
	for i := range c.Nodes {
		if c.Removed(i) {
			errs = append(errs, c.AddNode(ctx, i))
		}
	}
	return errors.Join(errs...)
}

// reconcileMembers marks as removed (and wipes) any node the leader's
// configuration lacks: a removal whose answer was lost may still have
// happened.
func (c *Cluster) reconcileMembers(ctx context.Context) error {
	var members *rookeryv1.MembersResponse
	err := c.onLeader(ctx, "list members", func(ctx context.Context, l int) error {
		var err error
		members, err = c.ClusterClient(l).Members(ctx, &rookeryv1.MembersRequest{})
		return err
	})
	if err != nil {
		return err
	}
	in := map[string]bool{}
	for _, m := range members.GetMembers() {
		in[m.GetId()] = true
	}
	for i, n := range c.Nodes {
		if in[n.ID] || c.Removed(i) {
			continue
		}
		c.cfg.Logger.Warn("node is not in the configuration; re-adding it empty", "node", n.ID)
		if err := c.wipe(i); err != nil {
			return err
		}
	}
	return nil
}

// Close stops every node and proxy.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for i := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Terminate(i)
		}()
	}
	wg.Wait()
	for _, n := range c.Nodes {
		n.RaftProxy.Close()
		n.GRPCProxy.Close()
		n.conn.Close()
	}
	for _, p := range c.ports {
		p.Release()
	}
}

// highestTerm is the highest raft term any reachable node reports.
func (c *Cluster) highestTerm(ctx context.Context) uint64 {
	var term uint64
	for _, st := range c.statuses(ctx) {
		if st != nil {
			term = max(term, st.GetTerm())
		}
	}
	return term
}
