package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// Node is one member of a rookery cluster: a raft instance over the
// directory store, the write path (proposals on the leader, forwarding from
// followers) and the linearizable read path.
type Node struct {
	cfg    Config
	logger *slog.Logger

	store   *fsm.Store
	fsm     *fsmAdapter
	storage *storage
	trans   *raftTransport
	// raftStream is trans's stream layer with the secret handshake (nil
	// with raft TLS or RaftInsecure); it counts refused connections.
	raftStream *secretStreamLayer
	raft       *raft.Raft

	peers     *peerClients
	proposer  *proposer
	forwarder *forwarder
	// leaderReads coalesces read-index rounds run on the leader (local
	// reads and Peer.ReadIndex calls); followerReads coalesces a follower's
	// rounds to the leader.
	leaderReads   *readBatcher
	followerReads *readBatcher
	confirms      confirmer // the leader-read rounds' heartbeats
	lease         *lease    // nil unless ReadLease
	lead          leadership
	health        *heartbeatTracker
	changes       leaderChanges
	commits       commitPusher
	commitPushes  atomic.Uint64 // commits a follower accepted from commitPusher
	// commitPushRefusals counts pushes a follower answered Success=false.
	commitPushRefusals atomic.Uint64
	// forwards carries writes to the leader (applystream.go);
	// applyStreamsServed counts ApplyStream streams served, unaryForwards
	// the writes forwarded with a Peer.Apply call each instead.
	forwards           applyStreams
	applyStreamsServed atomic.Uint64
	unaryForwards      atomic.Uint64
	early              *earlyAppend  // nil with PersistBeforeReplicate
	leaderSeen         broadcast     // notified on every leader raft reports
	retryBase          time.Duration // first pause of a write or read retry
	retryMax           time.Duration // longest pause
	stalls             stallDetector
	observer           *raft.Observer
	obsCh              chan raft.Observation
	// alarms are the node's health conditions (alarms.go); consistency
	// its consistency checker (consistency.go).
	alarms      *alarmSet
	consistency consistency

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	// failed is closed once the state machine halted and raft was shut
	// down; failure says why (see Failed).
	failed  chan struct{}
	failure error
}

// Open validates cfg, opens (or creates) the node's state in cfg.DataDir and
// starts raft. A node with state on disk resumes from it and ignores
// Bootstrap, Peers and Join; a fresh node bootstraps or joins as cfg says.
// Joining happens before Open returns and is bounded by ctx.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, logger: cfg.Logger.With("node", cfg.NodeID)}
	n.alarms = newAlarmSet(n.logger)
	if err := waitVoteFence(ctx, cfg); err != nil {
		return nil, err
	}
	if err := n.start(); err != nil {
		n.release()
		return nil, err
	}
	if err := n.initCluster(ctx); err != nil {
		_ = n.Close()
		return nil, err
	}
	return n, nil
}

// start opens storage and transport and starts raft and the node's
// goroutines.
func (n *Node) start() error {
	var err error
	if s := n.cfg.Stores; s != nil {
		n.storage = &storage{logs: s.Logs, stable: s.Stable, snaps: s.Snapshots, close: s.Close}
	} else if n.storage, err = openVerifiedStorage(n.cfg.DataDir, n.cfg.LogStore, !n.cfg.BoltDirect, n.cfg.SnapshotRetain, n.logger); err != nil {
		return err
	} else {
		newDiskHealth(n.alarms).wrap(n.storage, filepath.Join(n.cfg.DataDir, snapshotsDir))
	}
	n.store = fsm.New(n.cfg.FSM)
	n.fsm = newFSMAdapter(n.store, n.logger)
	n.fsm.commands = newCommandCount(uint64(max(n.cfg.SnapshotCommands, 0)))
	inner := n.cfg.Transport
	if inner == nil {
		if inner, n.raftStream, err = newTransport(n.cfg.RaftAddr, n.cfg.RaftAdvertise, n.cfg.RaftTLS, n.cfg.RaftSecret, n.logger); err != nil {
			return err
		}
	}
	n.trans = &raftTransport{Transport: inner, term: func() uint64 { return n.raft.CurrentTerm() }}
	if n.cfg.ReadMode == ReadLease {
		n.lease = newLease(n.cfg.LeaseClock, n.cfg.HeartbeatTimeout, n.cfg.LeaseMaxDrift)
		n.trans.lease = n.lease
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.peers = newPeerClients(n.cfg.PeerDialOptions)
	n.proposer = newProposer(n)
	n.commits.n = n
	n.commits.wake = make(chan struct{}, 1)
	n.forwards.n = n
	n.confirms.n = n
	n.forwarder = newForwarder(n)
	roundCtx := func() (context.Context, context.CancelFunc) { return n.withWriteTimeout(n.ctx) }
	n.leaderReads = newReadBatcher(n.leaderReadIndex, roundCtx)
	n.followerReads = newReadBatcher(n.followerReadIndex, roundCtx)
	n.lead.init()
	n.retryBase, n.retryMax = retryBackoffBase, retryBackoffMax
	n.health = newHeartbeatTracker()

	n.storage.logs = withStoreTiming(n.storage.logs, n.cfg.Hooks.StoreLogs)
	if n.storage.journal != nil {
		n.storage.journal.observe = n.cfg.Hooks.JournalCheckpoint
	}
	if !n.cfg.PersistBeforeReplicate {
		n.early = newEarlyAppend(n, n.storage.logs)
		n.storage.logs = n.early
		n.trans.early = n.early
	}
	if n.cfg.FollowerHold > 0 {
		n.trans.pace = newPace(n, n.cfg.FollowerHold, n.early)
	}
	r, err := newRaftGuarded(n.cfg.raftConfig(n.logger), n.fsm, n.storage, n.trans, n.cfg.DataDir)
	if err != nil {
		if herr := n.fsm.haltedErr(); herr != nil {
			return fmt.Errorf("cluster: start raft from %s: %w%s", n.cfg.DataDir, herr, wayOut(n.cfg.DataDir))
		}
		return fmt.Errorf("cluster: start raft from %s: %w", n.cfg.DataDir, err)
	}
	n.fsm.setRunning()
	n.raft = r
	if n.early != nil {
		n.early.raft.Store(r)
	}
	n.failed = make(chan struct{})
	n.obsCh = make(chan raft.Observation, 64)
	n.observer = raft.NewObserver(n.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(n.observer)
	n.goFunc(n.proposer.run)
	n.goFunc(n.forwarder.run)
	n.goFunc(n.watchLeadership)
	n.goFunc(n.watchObservations)
	n.goFunc(n.watchHalt)
	n.goFunc(n.runConsistencyChecks)
	n.goFunc(n.snapshotOnCommands)
	n.stalls.warnAt = n.cfg.LeaderLeaseTimeout / 2
	n.goFunc(n.watchStalls)
	return nil
}

// Failed is closed when the node stopped by itself because its state
// machine could not decode or apply a committed entry or snapshot (see
// fsmAdapter): raft is shut down, nothing more is applied, and Failure
// says which entry and what to do. The caller should Close the node and
// exit with that message.
func (n *Node) Failed() <-chan struct{} { return n.failed }

// Failure is the reason the node failed (wrapping ErrHalted), or nil while
// Failed is open.
func (n *Node) Failure() error {
	select {
	case <-n.failed:
		return n.failure
	default:
		return nil
	}
}

// watchHalt shuts raft down once the state machine halts, so the node
// neither votes, acknowledges nor serves reads on state it cannot trust.
func (n *Node) watchHalt() {
	select {
	case <-n.fsm.halted:
	case <-n.ctx.Done():
		return
	}
	n.failure = fmt.Errorf("cluster: node %s stopped: %w%s", n.cfg.NodeID, n.fsm.haltedErr(), haltWayOut(n.cfg.DataDir))
	n.logger.Error("node stopped: state machine halted; shutting raft down", "data_dir", n.cfg.DataDir, "error", n.failure)
	n.alarms.raise(Alarm{Kind: AlarmHalted, Message: n.failure.Error(), BlocksReads: true, NeedsRestart: true})
	if err := n.raft.Shutdown().Error(); err != nil {
		n.logger.Warn("raft shutdown after halt", "error", err)
	}
	close(n.failed)
}

// haltWayOut is wayOut for a halt: the entry came from this node's disk or
// from the leader's, and re-joining only helps in the first case.
func haltWayOut(dataDir string) string {
	return fmt.Sprintf(" (the way out: wipe this node's data dir %s and let it re-join; it catches up by snapshot. If it halts at the same entry again, or other nodes halted too, the leader's copy of the entry is damaged: see docs/integrity.md)", dataDir)
}

// wayOut is the operator's remedy appended to errors about damaged state.
func wayOut(dataDir string) string {
	return fmt.Sprintf(" (the way out: wipe this node's data dir %s and let it re-join; it catches up by snapshot; see docs/integrity.md)", dataDir)
}

// initCluster bootstraps or joins a node that has no state on disk.
func (n *Node) initCluster(ctx context.Context) error {
	has, err := n.storage.hasState()
	if err != nil {
		return fmt.Errorf("cluster: read raft state in %s: %w", n.cfg.DataDir, err)
	}
	if has {
		n.logger.Info("resuming from existing raft state", "data_dir", n.cfg.DataDir, "log_store", n.cfg.LogStore)
		return nil
	}
	switch {
	case n.cfg.Bootstrap:
		return n.bootstrap([]Peer{{ID: n.cfg.NodeID, RaftAddr: string(n.trans.LocalAddr()), APIAddr: n.cfg.APIAddr}})
	case len(n.cfg.Peers) > 0:
		err := n.bootstrap(n.cfg.Peers)
		if errors.Is(err, raft.ErrCantBootstrap) {
			// The other members bootstrapped from the same list, elected a
			// leader and replicated it here between raft's start and ours.
			n.logger.Info("configuration already received from the leader; not bootstrapping")
			return nil
		}
		return err
	case len(n.cfg.Join) > 0:
		return n.join(ctx)
	}
	n.logger.Warn("no raft state, no bootstrap, peers or join configured: waiting to be added by the leader")
	return nil
}

func (n *Node) bootstrap(peers []Peer) error {
	var servers []raft.Server
	for _, p := range peers {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
	}
	n.logger.Info("bootstrapping cluster", "voters", len(servers))
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if errors.Is(err, raft.ErrCantBootstrap) && len(peers) > 1 {
		// raft runs before bootstrap; a peer that bootstrapped with the
		// same static list first and already replicated to this node gave
		// it the state the bootstrap would have.
		n.logger.Info("a peer bootstrapped the cluster first; continuing from what it sent")
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: bootstrap: %w", err)
	}
	return nil
}

func (n *Node) goFunc(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// shutdownGrace is how long Close lets raft stop on its own before closing
// the transport under it: raft's goroutines may sit in network I/O with long
// deadlines (a snapshot being streamed to a stalled peer), and closing the
// transport ends those at once.
const shutdownGrace = 5 * time.Second

// Close stops the node gracefully: pending calls fail with ErrShutdown or
// ErrUnavailable, raft shuts down, then the transport, peer connections and
// stores are closed. Close is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		if n.cancel != nil {
			n.cancel()
		}
		if n.raft != nil {
			done := make(chan error, 1)
			go func() { done <- n.raft.Shutdown().Error() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(shutdownGrace):
				n.logger.Warn("raft slow to shut down; closing its transport", "after", shutdownGrace)
				_ = n.trans.Close()
				select {
				case err = <-done:
				case <-time.After(shutdownGrace):
					// A raft goroutine is stuck outside any I/O we can end.
					// Leave the stores open under it (the process is
					// about to exit) rather than hang the caller.
					n.logger.Error("raft did not shut down; abandoning it", "after", 2*shutdownGrace)
					n.closeErr = fmt.Errorf("cluster: raft did not shut down within %s", 2*shutdownGrace)
					n.storage = nil
				}
			}
			if err != nil && n.closeErr == nil {
				n.closeErr = fmt.Errorf("cluster: raft shutdown: %w", err)
			}
			n.raft.DeregisterObserver(n.observer)
		}
		n.wg.Wait()
		n.release()
	})
	return n.closeErr
}

// release closes what start opened, in reverse order.
func (n *Node) release() {
	if n.peers != nil {
		n.peers.close()
	}
	if n.trans != nil {
		if err := n.trans.Close(); err != nil && n.closeErr == nil {
			n.closeErr = fmt.Errorf("cluster: close transport: %w", err)
		}
		n.trans.fence()
	}
	if n.storage != nil && n.storage.close != nil {
		if err := n.storage.close(); err != nil && n.closeErr == nil {
			n.closeErr = fmt.Errorf("cluster: close raft store: %w", err)
		}
	}
	if n.cancel != nil {
		n.cancel()
	}
}

// Store is the node's directory state. Reads on it are local (possibly
// stale); call LinearizableRead first for a linearizable read.
func (n *Node) Store() *fsm.Store { return n.store }

// ID is this node's raft server ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// RaftAddr is the raft address this node advertises (the bound port when
// the config asked for port 0).
func (n *Node) RaftAddr() string { return string(n.trans.LocalAddr()) }

// IsLeader reports whether this node currently leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader as this node knows it; zero if unknown.
func (n *Node) Leader() Peer {
	addr, id := n.raft.LeaderWithID()
	if id == "" {
		return Peer{}
	}
	return Peer{ID: string(id), RaftAddr: string(addr), APIAddr: n.apiAddrOf(string(id))}
}

// apiAddrOf finds a member's gRPC address: the replicated peer map first,
// then the static peer list.
func (n *Node) apiAddrOf(id string) string {
	if id == n.cfg.NodeID {
		return n.cfg.APIAddr
	}
	if a := n.store.Peers()[id]; a != "" {
		return a
	}
	for _, p := range n.cfg.Peers {
		if p.ID == id {
			return p.APIAddr
		}
	}
	return ""
}

// WaitApplied returns once this node has applied the raft log up to index.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	for {
		applied, changed := n.fsm.appliedIndex()
		if applied >= index {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return n.ctxError(ctx, fmt.Sprintf("waiting for index %d (applied %d)", index, applied), nil)
		case <-n.ctx.Done():
			return ErrShutdown
		}
	}
}

// WaitRevision returns once this node's store has reached revision rev.
func (n *Node) WaitRevision(ctx context.Context, rev uint64) error {
	for {
		changed := n.store.Changed()
		cur := n.store.Revision()
		if cur >= rev {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return n.ctxError(ctx, fmt.Sprintf("waiting for revision %d (at %d)", rev, cur), nil)
		case <-n.ctx.Done():
			return ErrShutdown
		}
	}
}

// errWriteTimeout is the cause attached to the WriteTimeout deadline.
var errWriteTimeout = errors.New("no quorum or leader within the write timeout")

// withWriteTimeout bounds ctx by WriteTimeout.
func (n *Node) withWriteTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, n.cfg.WriteTimeout, errWriteTimeout)
}

// ctxError explains why ctx ended: a deadline (ours or the caller's) is the
// cluster being unavailable; a cancellation is the caller's decision.
func (n *Node) ctxError(ctx context.Context, what string, last error) error {
	if n.closed.Load() {
		return ErrShutdown
	}
	err := ctx.Err()
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("cluster: %s: %w", what, err)
	}
	cause := context.Cause(ctx)
	msg := what
	if errors.Is(cause, errWriteTimeout) {
		msg = fmt.Sprintf("%s: %v after %v", what, cause, n.cfg.WriteTimeout)
	}
	if last != nil {
		return fmt.Errorf("%w: %s (last error: %w): %w", ErrUnavailable, msg, last, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, msg, err)
}

// sleepCtx waits d, or until ctx or the node ends.
func (n *Node) sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-n.ctx.Done():
		return false
	}
}

// waitFuture waits for a raft future without outliving ctx.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
