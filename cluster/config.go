package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/rookery/rookery/fsm"
)

// Peer names one cluster member: its raft identity and the two addresses
// other members reach it on.
type Peer struct {
	ID       string
	RaftAddr string // raft transport address
	APIAddr  string // gRPC address (Peer service, forwarding target)
}

// Config configures a Node. Start from DefaultConfig and fill in the
// identity, addresses, data directory and how the node joins a cluster.
type Config struct {
	// NodeID is the raft server ID; it must stay the same across restarts.
	NodeID string
	// RaftAddr is the raft TCP bind and advertise address, e.g.
	// 127.0.0.1:7001. It must name a concrete IP peers can reach; port 0
	// binds an ephemeral port and advertises it (see Node.RaftAddr).
	RaftAddr string
	// RaftAdvertise, when set, is the raft address other members dial
	// instead of RaftAddr: a NAT, proxy or container port mapping in front
	// of the bound address. It is what Join announces and what bootstrap
	// records for this node.
	RaftAdvertise string
	// APIAddr is this node's gRPC address, recorded in the replicated peer
	// map so followers can forward writes and read-index requests here while
	// this node leads.
	APIAddr string
	// DataDir holds the raft log (raft.db, or wal/ with LogStoreWAL) and
	// snapshots/.
	DataDir string
	// LogStore chooses the raft log store: LogStoreBolt (the default) or
	// LogStoreWAL. A data dir keeps the store it was created with.
	LogStore string
	// BoltDirect makes LogStoreBolt write every append straight into
	// raft.db (bbolt's two syncs each) instead of through raft.journal
	// (one sync; docs/log-journal.md). For comparison, and a way out.
	BoltDirect bool

	// How a node without state on disk starts; ignored when DataDir already
	// holds raft state (a restart resumes from disk and never re-bootstraps).
	// At most one of Bootstrap, Peers and Join may be set. With none set, the
	// node waits for a leader to add it (AddVoter from an operator).
	//
	// Bootstrap: form a single-node cluster.
	Bootstrap bool
	// Peers: the static voter list, including this node; every member starts
	// with the same list and bootstraps with it.
	Peers []Peer
	// Join: gRPC addresses of existing members; Open asks them (Peer.Join,
	// forwarded to the leader) to add this node as a voter.
	Join []string

	// Raft timing (docs/raft-timeouts.md). Failover after a leader dies
	// takes about 1.5–2.5× HeartbeatTimeout; a process stall (CPU
	// starvation, a paused VM) shorter than both HeartbeatTimeout and
	// LeaderLeaseTimeout costs no leadership.
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// LeaderLeaseTimeout is how long a leader keeps leading without
	// hearing from a quorum; zero means HeartbeatTimeout, the most raft
	// allows. A shorter lease only makes a leader that was itself stalled
	// step down while its followers still follow it: reads here confirm
	// leadership with a quorum round (VerifyLeader) and never rely on it.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout is how often raft's leader sends an AppendEntries to a
	// follower when nothing new is to be replicated. When writes stop, the
	// leader pushes the last commit to the followers at once
	// (commitpush.go), so this only bounds the wait of a follower that
	// missed that push (it was behind); every tick costs an RPC per
	// follower, each a sealed message both sides encode, encrypt and
	// decode, on an idle cluster too. The default is hashicorp/raft's own;
	// at the 2 ms used before the push, three idle nodes on loopback used
	// about half a core between them.
	CommitTimeout time.Duration
	// ReadMode is how the leader confirms a linearizable read:
	// ReadLinearizable (the default, a heartbeat round per batch of
	// reads) or ReadLease (answered locally while a lease holds; lease.go).
	// Every member must run the same mode: a lease-mode node waits a
	// HeartbeatTimeout after it starts before it votes.
	ReadMode string
	// LeaseMaxDrift is the largest relative difference between the rates
	// of two members' clocks that ReadLease tolerates; the lease is that
	// much shorter than HeartbeatTimeout. Zero means 0.1.
	LeaseMaxDrift float64
	// LeaseClock is the clock leases are measured on; nil means Go's
	// monotonic clock. Tests and the clock nemesis replace it.
	LeaseClock LeaseClock
	// WriteTimeout bounds a write and a linearizable read that cannot reach
	// a quorum: they fail with an error wrapping ErrUnavailable.
	WriteTimeout time.Duration

	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotRetain    int
	// SnapshotCommands makes the node snapshot itself once it has applied
	// this many directory commands since its last snapshot or restore, on
	// top of SnapshotThreshold, which counts log entries: a bulk import
	// packs up to 4,096 commands into an entry, so a 1M import is ~250
	// entries, after which a restarted node would replay the whole import
	// and the store would keep its half-full B-trees until a snapshot
	// compacts them (docs/notes/scale.md). The default, 262,144, is 16,384
	// entries (the default SnapshotThreshold) of 16 commands, more than
	// group commit packs for 16 MUPDATE writers (5–11): ordinary traffic
	// still reaches the entry threshold first, and a restart replays at
	// most ~4 s of imported commands (a 1M import took 14 s). Zero means
	// the default; negative, entries only.
	SnapshotCommands int

	// MaxAppendEntries caps raft's group commit and replication batch.
	MaxAppendEntries int
	BatchApplyCh     bool
	// MaxBatchCommands caps how many commands concurrent Apply calls on the
	// leader are coalesced into one raft log entry.
	MaxBatchCommands int
	// MaxProposalsInFlight caps the entries the leader's proposer has
	// handed to raft and not yet seen committed. While they are all in
	// flight, new writes wait and go together into the next entry, so
	// concurrent writers share one fsync per node and one replication
	// round instead of each entry being written on its own. The default,
	// 2, lets the leader write the next entry while the previous one
	// replicates; 1 packs the most commands per entry but leaves the
	// leader's disk idle during replication (docs/notes/perf.md has the
	// measurements). A follower keeps as many batches of forwarded writes
	// in flight to the leader (forwarder).
	MaxProposalsInFlight int
	// GroupCommitHold bounds how long a new entry waits for the writers
	// the last commits answered, so that their next commands share it
	// instead of the first one back leaving alone. It must cover a
	// client's turnaround (reply read, next command sent and parsed):
	// default 1ms, as 300µs was too short for MUPDATE clients on a loaded
	// host (docs/notes/perf.md §3). Negative turns it off.
	GroupCommitHold time.Duration
	// CommitPushDelay is how long the leader waits before telling followers
	// of the last commit of a burst itself (commitpush.go): if the next
	// entry is appended meanwhile, its AppendEntries carries the commit and
	// no push is sent. At one connection the next command comes well within
	// it, and the push's four messages per entry were a fifth of the
	// cluster's CPU per create (NOTES.md, ninth session). A follower that
	// waits for the commit (a read index or a forwarded write it will
	// apply) gets it at once. Default 2ms; negative pushes at once.
	CommitPushDelay time.Duration
	// PersistBeforeReplicate restores hashicorp/raft's own order, in which
	// followers see an entry only after the leader wrote it. By default
	// the leader sends it while it writes, so that the leader's and the
	// followers' syncs overlap (earlyappend.go).
	PersistBeforeReplicate bool
	// FollowerHold holds a new entry for the followers a commit does not
	// need (all but voters/2: with early append those it sends no early
	// batch, else those not answering first) up to this long, so that they
	// store several entries with one sync (pace.go). It is for nodes whose
	// logs share a disk, where those syncs compete with the ones a commit
	// waits for. Zero: raft's own pace, each entry to every follower at
	// once.
	FollowerHold time.Duration

	// trace, in benchmarks, receives every proposal's timestamps.
	trace writeTrace
	// withoutApplyStream, in tests, makes this node answer ApplyStream as
	// a rookeryd from before it would: Unimplemented.
	withoutApplyStream bool

	// RaftTLS, when set, wraps the raft transport in TLS in both directions.
	// The same config serves and dials: Certificates must be valid for
	// server and client auth; RootCAs and ClientCAs default to each other,
	// and a ClientCAs pool makes client certificates mandatory.
	RaftTLS *tls.Config
	// RaftSecret authenticates raft connections when RaftTLS is nil: both
	// ends of every connection prove they hold it before raft sees a byte,
	// and the traffic is then encrypted under keys derived from it
	// (docs/raft-link.md). rookeryd passes the cluster secret
	// (raft.peer_secret_file). At least 16 bytes.
	RaftSecret []byte
	// RaftInsecure lets a node run raft with neither RaftTLS nor
	// RaftSecret: plaintext, and anyone who reaches the raft port can
	// rewrite the directory. Without it such a config is refused.
	RaftInsecure bool
	// PeerDialOptions are used to dial other members' gRPC servers
	// (credentials first of all). Empty means insecure, fit for loopback only.
	PeerDialOptions []grpc.DialOption

	// ConsistencyCheckInterval is how often this node compares its
	// directory hash with the other members' (and recomputes its own from
	// its entries); see Node.CheckConsistency. Negative disables the
	// periodic check (the on-demand one stays).
	ConsistencyCheckInterval time.Duration

	FSM    fsm.Config
	Logger *slog.Logger

	// Hooks feed a metrics layer (metrics.go); zero means none.
	Hooks Hooks

	// Transport and Stores, when set, replace the raft listener on
	// RaftAddr and the stores in DataDir, as hashicorp/raft's own tests
	// swap in InmemTransport and InmemStore: the seams for tests that
	// inject faults. RaftAddr must be the transport's LocalAddr; RaftTLS,
	// RaftSecret and RaftAdvertise do not apply. The node closes both.
	Transport Transport
	Stores    *Stores
}

// Transport is what a node needs of an injected raft transport: raft's
// InmemTransport and NetworkTransport have it all.
type Transport interface {
	raft.Transport
	raft.WithClose
	raft.WithPreVote
}

// Stores are injected raft stores; Close, if set, runs once raft stopped.
type Stores struct {
	Logs      raft.LogStore
	Stable    raft.StableStore
	Snapshots raft.SnapshotStore
	Close     func() error
}

// DefaultConfig returns settings tuned for a LAN: 200 ms heartbeat and
// election timeouts give sub-second failover, and the leader lease as long
// as the heartbeat timeout lets a leader ride out stalls up to 200 ms
// (docs/raft-timeouts.md has both measurements); writes without quorum
// fail after 5 s.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   200 * time.Millisecond,
		ElectionTimeout:    200 * time.Millisecond,
		LeaderLeaseTimeout: 200 * time.Millisecond,
		CommitTimeout:      50 * time.Millisecond,
		WriteTimeout:       5 * time.Second,
		SnapshotInterval:   2 * time.Minute,
		SnapshotThreshold:  16384,
		TrailingLogs:       10240,
		SnapshotRetain:     2,
		SnapshotCommands:   1 << 18,
		LogStore:           LogStoreBolt,
		MaxAppendEntries:   64,
		BatchApplyCh:       false,
		MaxBatchCommands:   1024,

		MaxProposalsInFlight: 2,
		ReadMode:             ReadLinearizable,
		LeaseMaxDrift:        0.1,
		GroupCommitHold:      time.Millisecond,
		CommitPushDelay:      2 * time.Millisecond,
		FSM:                  fsm.DefaultConfig(),

		ConsistencyCheckInterval: 5 * time.Minute,
	}
}

// withDefaults fills zero values from DefaultConfig so a partially filled
// Config behaves sensibly.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&c.HeartbeatTimeout, d.HeartbeatTimeout)
	setDur(&c.ElectionTimeout, d.ElectionTimeout)
	setDur(&c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	setDur(&c.CommitTimeout, d.CommitTimeout)
	setDur(&c.WriteTimeout, d.WriteTimeout)
	setDur(&c.SnapshotInterval, d.SnapshotInterval)
	setDur(&c.ConsistencyCheckInterval, d.ConsistencyCheckInterval)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = d.SnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = d.TrailingLogs
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = d.SnapshotRetain
	}
	if c.SnapshotCommands == 0 {
		c.SnapshotCommands = d.SnapshotCommands
	}
	if c.LogStore == "" {
		c.LogStore = d.LogStore
	}
	if c.MaxAppendEntries == 0 {
		c.MaxAppendEntries = d.MaxAppendEntries
	}
	if c.MaxBatchCommands == 0 {
		c.MaxBatchCommands = d.MaxBatchCommands
	}
	if c.MaxProposalsInFlight == 0 {
		c.MaxProposalsInFlight = d.MaxProposalsInFlight
	}
	if c.ReadMode == "" {
		c.ReadMode = d.ReadMode
	}
	if c.LeaseMaxDrift == 0 {
		c.LeaseMaxDrift = d.LeaseMaxDrift
	}
	if c.LeaseClock == nil {
		c.LeaseClock = monotonicClock{}
	}
	if c.GroupCommitHold == 0 {
		c.GroupCommitHold = d.GroupCommitHold
	}
	if c.CommitPushDelay == 0 {
		c.CommitPushDelay = d.CommitPushDelay
	}
	if c.FSM.HistorySize == 0 {
		c.FSM.HistorySize = d.FSM.HistorySize
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// validate reports the first problem that would stop the node from working.
func (c Config) validate() error {
	if c.NodeID == "" {
		return errors.New("cluster: config: NodeID is empty")
	}
	if c.DataDir == "" {
		return errors.New("cluster: config: DataDir is empty")
	}
	if err := checkAddr(c.RaftAddr, true); err != nil {
		return fmt.Errorf("cluster: config: RaftAddr: %w", err)
	}
	if err := checkAddr(c.APIAddr, false); err != nil {
		return fmt.Errorf("cluster: config: APIAddr: %w", err)
	}
	modes := 0
	if c.Bootstrap {
		modes++
	}
	if len(c.Peers) > 0 {
		modes++
	}
	if len(c.Join) > 0 {
		modes++
	}
	if modes > 1 {
		return errors.New("cluster: config: Bootstrap, Peers and Join are mutually exclusive")
	}
	if err := c.validatePeers(); err != nil {
		return err
	}
	for _, a := range c.Join {
		if err := checkAddr(a, false); err != nil {
			return fmt.Errorf("cluster: config: Join address %q: %w", a, err)
		}
	}
	if c.WriteTimeout <= 0 {
		return errors.New("cluster: config: WriteTimeout must be positive")
	}
	if c.LogStore != LogStoreBolt && c.LogStore != LogStoreWAL {
		return fmt.Errorf("cluster: config: LogStore %q: want %q or %q", c.LogStore, LogStoreBolt, LogStoreWAL)
	}
	if err := c.validateRaftAuth(); err != nil {
		return err
	}
	if c.ReadMode != ReadLinearizable && c.ReadMode != ReadLease {
		return fmt.Errorf("cluster: config: ReadMode %q: want %q or %q", c.ReadMode, ReadLinearizable, ReadLease)
	}
	if c.LeaseMaxDrift < 0 || c.LeaseMaxDrift >= 0.5 {
		return fmt.Errorf("cluster: config: LeaseMaxDrift %v: want at least 0 and below 0.5", c.LeaseMaxDrift)
	}
	if c.SnapshotRetain < 1 {
		return errors.New("cluster: config: SnapshotRetain must be at least 1")
	}
	if c.MaxBatchCommands < 1 {
		return errors.New("cluster: config: MaxBatchCommands must be at least 1")
	}
	if c.MaxProposalsInFlight < 1 {
		return errors.New("cluster: config: MaxProposalsInFlight must be at least 1")
	}
	if err := raft.ValidateConfig(c.raftConfig(nil)); err != nil {
		return fmt.Errorf("cluster: config: %w", err)
	}
	return nil
}

// minRaftSecretLen matches rookeryd's minimum for the cluster secret.
const minRaftSecretLen = 16

// validateRaftAuth refuses a raft transport anyone could talk to, unless
// RaftInsecure says so.
func (c Config) validateRaftAuth() error {
	if len(c.RaftSecret) > 0 && len(c.RaftSecret) < minRaftSecretLen {
		return fmt.Errorf("cluster: config: RaftSecret is %d bytes; use at least %d", len(c.RaftSecret), minRaftSecretLen)
	}
	if c.RaftTLS == nil && len(c.RaftSecret) == 0 && !c.RaftInsecure && c.Transport == nil {
		return errors.New("cluster: config: raft connections would be unauthenticated: set RaftSecret (the cluster secret) or RaftTLS, or RaftInsecure to accept that")
	}
	return nil
}

func (c Config) validatePeers() error {
	if len(c.Peers) == 0 {
		return nil
	}
	seen := make(map[string]bool, len(c.Peers))
	self := false
	for _, p := range c.Peers {
		if p.ID == "" {
			return errors.New("cluster: config: a peer has an empty ID")
		}
		if seen[p.ID] {
			return fmt.Errorf("cluster: config: peer %q listed twice", p.ID)
		}
		seen[p.ID] = true
		if err := checkAddr(p.RaftAddr, true); err != nil {
			return fmt.Errorf("cluster: config: peer %q RaftAddr: %w", p.ID, err)
		}
		if err := checkAddr(p.APIAddr, false); err != nil {
			return fmt.Errorf("cluster: config: peer %q APIAddr: %w", p.ID, err)
		}
		if p.ID == c.NodeID {
			self = true
		}
	}
	if !self {
		return fmt.Errorf("cluster: config: Peers does not include this node %q", c.NodeID)
	}
	return nil
}

// checkAddr accepts host:port with a port in range; raft addresses must be
// literal, specified IPs because raft advertises them verbatim.
func checkAddr(addr string, raftAddr bool) error {
	if addr == "" {
		return errors.New("empty address")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	if host == "" {
		return errors.New("missing host")
	}
	if raftAddr {
		ip := net.ParseIP(host)
		if ip == nil {
			return fmt.Errorf("host %q is not an IP address", host)
		}
		if ip.IsUnspecified() {
			return fmt.Errorf("%s is not an address peers can reach", host)
		}
	}
	return nil
}

// raftConfig translates Config into hashicorp/raft's configuration.
func (c Config) raftConfig(logger *slog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.SnapshotInterval = c.SnapshotInterval
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.TrailingLogs = c.TrailingLogs
	rc.MaxAppendEntries = c.MaxAppendEntries
	rc.BatchApplyCh = c.BatchApplyCh
	if logger != nil {
		rc.Logger = newHclog(logger, "raft")
	}
	return rc
}
