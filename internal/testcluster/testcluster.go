// Package testcluster starts real rookeryd processes on 127.0.0.1 for
// end-to-end tests: the binary is built from this module, every node gets
// its own data directory and free ports, and nodes can be killed (SIGKILL),
// stopped (SIGTERM) and restarted on the same data, as in production.
package testcluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/internal/freeport"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Options configures a test cluster.
type Options struct {
	Nodes int // default 3
	// Users maps identity → password; Admins and Readers give them roles.
	// Default: admin/adminpw (writer), mupdate/mupdatepw (writer, what the
	// murder-up.sh backends use), reader/readerpw (reader).
	Users   map[string]string
	Admins  []string
	Readers []string
	// ExtraArgs are appended to every node's command line.
	ExtraArgs []string
	// Prepare, when set, runs before the nodes first start, with the
	// rookeryd binary, the peer list (id=raft/grpc,...) and each node's
	// data directory: to seed them with `rookeryd snapshot-restore`.
	Prepare func(bin, peers string, dataDirs []string) error
	// LeaderWait bounds the wait for the first leader [30 s].
	LeaderWait time.Duration
}

// Node is one rookeryd process.
type Node struct {
	Spec
	DebugAddr string // debug.listen: /metrics, /debug/vars, pprof

	args []string
	proc *Process
}

// Running reports whether the node's process is alive.
func (n *Node) Running() bool { return n.proc.Running() }

// Pid is the node's process id.
func (n *Node) Pid() int { return n.proc.Pid() }

// Cluster is a set of rookeryd processes.
type Cluster struct {
	t     testing.TB
	bin   string
	dir   string
	Nodes []*Node
	Token string // "admin:adminpw" style bearer for the gRPC API
}

// Start builds rookeryd, starts the nodes with a static peer list and
// waits for a leader. Everything is stopped at test cleanup; node logs are
// printed when the test failed.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Users == nil {
		opts.Users = map[string]string{"admin": "adminpw", "mupdate": "mupdatepw", "reader": "readerpw"}
		opts.Admins = []string{"admin", "mupdate"}
		opts.Readers = []string{"reader"}
	}
	dir := t.TempDir()
	c := &Cluster{t: t, dir: dir, bin: Build(t, dir)}
	c.WriteUsers(opts.Users)
	secret := filepath.Join(dir, "cluster-secret")
	if err := os.WriteFile(secret, []byte(rand.Text()), 0o600); err != nil {
		t.Fatal(err)
	}
	ports := freeport.T(t, 4*opts.Nodes)
	var peers []string
	for i := 0; i < opts.Nodes; i++ {
		id := fmt.Sprintf("n%d", i+1)
		n := &Node{Spec: Spec{
			ID:          id,
			RaftAddr:    fmt.Sprintf("127.0.0.1:%d", ports[4*i]),
			GRPCAddr:    fmt.Sprintf("127.0.0.1:%d", ports[4*i+1]),
			MupdateAddr: fmt.Sprintf("127.0.0.1:%d", ports[4*i+2]),
			DataDir:     filepath.Join(dir, id),
			LogPath:     filepath.Join(dir, id+".log"),
		}, DebugAddr: fmt.Sprintf("127.0.0.1:%d", ports[4*i+3])}
		peers = append(peers, fmt.Sprintf("%s=%s/%s", n.ID, n.RaftAddr, n.GRPCAddr))
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		n.args = append(n.Args(secret, c.UsersFile(), opts.Admins),
			"-raft.peers", strings.Join(peers, ","), "-debug.listen", n.DebugAddr,
			"-auth.readers", strings.Join(opts.Readers, ","), "-log.level", "debug")
		n.args = append(n.args, opts.ExtraArgs...)
	}
	for admin := range opts.Users {
		if slices.Contains(opts.Admins, admin) {
			c.Token = admin + ":" + opts.Users[admin]
			break
		}
	}
	if opts.Prepare != nil {
		dirs := make([]string, len(c.Nodes))
		for i, n := range c.Nodes {
			dirs[i] = n.DataDir
		}
		if err := opts.Prepare(c.bin, strings.Join(peers, ","), dirs); err != nil {
			t.Fatalf("testcluster: prepare: %v", err)
		}
	}
	t.Cleanup(c.stopAll)
	for i := range c.Nodes {
		c.Start(i)
	}
	if opts.LeaderWait == 0 {
		opts.LeaderWait = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.LeaderWait)
	defer cancel()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatalf("testcluster: no leader: %v", err)
	}
	return c
}

// Build compiles cmd/rookeryd into dir and returns the binary's path.
func Build(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "rookeryd")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/rookery/rookery/cmd/rookeryd")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testcluster: build rookeryd: %v\n%s", err, out)
	}
	return bin
}

// Start (re)starts node i on its data directory.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	n := c.Nodes[i]
	if n.Running() {
		c.t.Fatalf("testcluster: %s already running", n.ID)
	}
	p, err := StartProcess(c.bin, n.args, n.LogPath)
	if err != nil {
		c.t.Fatalf("testcluster: %s: %v", n.ID, err)
	}
	n.proc = p
	if err := waitPort(n.GRPCAddr, 10*time.Second, p.Done()); err != nil {
		c.t.Fatalf("testcluster: %s: %v\n%s", n.ID, err, c.Log(i))
	}
}

func waitPort(addr string, limit time.Duration, dead <-chan struct{}) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-dead:
			return errors.New("process exited during start-up")
		default:
		}
		if conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			conn.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening after %v", addr, limit)
}

// Reload sends SIGHUP to node i (rookeryd re-reads its users file).
func (c *Cluster) Reload(i int) {
	if n := c.Nodes[i]; n.Running() {
		_ = n.proc.Signal(syscall.SIGHUP)
	}
}

// UsersFile is the path of the users file every node reads.
func (c *Cluster) UsersFile() string { return filepath.Join(c.dir, "users") }

// WriteUsers rewrites the users file (identity → password); call Reload
// for the nodes to pick it up.
func (c *Cluster) WriteUsers(users map[string]string) {
	if err := WriteUsers(c.UsersFile(), users); err != nil {
		c.t.Fatal(err)
	}
}

// Kill sends SIGKILL to node i and waits for it to die.
func (c *Cluster) Kill(i int) { c.signal(i, syscall.SIGKILL) }

// Stop sends SIGTERM to node i and waits for a clean exit.
func (c *Cluster) Stop(i int) { c.signal(i, syscall.SIGTERM) }

func (c *Cluster) signal(i int, sig syscall.Signal) {
	if p := c.Nodes[i].proc; p.Stop(sig, 15*time.Second) != nil {
		_ = p.Stop(syscall.SIGKILL, time.Minute)
	}
}

func (c *Cluster) stopAll() {
	for i := range c.Nodes {
		c.Stop(i)
	}
	if c.t.Failed() {
		for i, n := range c.Nodes {
			c.t.Logf("---- %s log ----\n%s", n.ID, c.Log(i))
		}
	}
}

// Log returns the last 200 lines of node i's log.
func (c *Cluster) Log(i int) string {
	b, _ := os.ReadFile(c.Nodes[i].LogPath)
	lines := strings.Split(string(b), "\n")
	if len(lines) > 200 {
		lines = lines[len(lines)-200:]
	}
	return strings.Join(lines, "\n")
}

// GRPCAddrs lists every node's gRPC address.
func (c *Cluster) GRPCAddrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.GRPCAddr)
	}
	return out
}

// Client dials the running nodes' gRPC APIs as the admin identity.
func (c *Cluster) Client() *client.Client { return c.dial(c.GRPCAddrs()) }

// NodeClient dials node i's gRPC API only, as the admin identity.
func (c *Cluster) NodeClient(i int) *client.Client { return c.dial([]string{c.Nodes[i].GRPCAddr}) }

func (c *Cluster) dial(addrs []string) *client.Client {
	c.t.Helper()
	cfg := client.DefaultConfig()
	cfg.Token = c.Token
	cl, err := client.Dial(addrs, cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// WaitLeader waits until every running node agrees on one leader and
// returns its index.
func (c *Cluster) WaitLeader(ctx context.Context) (int, error) {
	cl := c.Client()
	ids := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		ids[i] = n.ID
	}
	return AwaitLeader(ctx, ids, func(ctx context.Context) ([]*rookeryv1.StatusResponse, error) {
		sts := make([]*rookeryv1.StatusResponse, len(c.Nodes))
		for i, n := range c.Nodes {
			if n.Running() {
				st, err := cl.StatusOf(ctx, n.GRPCAddr)
				if err != nil {
					return nil, err
				}
				sts[i] = st
			}
		}
		return sts, nil
	})
}

// MupdatePort returns node i's MUPDATE port number.
func (c *Cluster) MupdatePort(i int) int {
	_, p, _ := net.SplitHostPort(c.Nodes[i].MupdateAddr)
	n, _ := strconv.Atoi(p)
	return n
}
