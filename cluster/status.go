package cluster

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// SnapshotInfo describes the newest raft snapshot on this node.
type SnapshotInfo struct {
	ID    string
	Index uint64
	Term  uint64
	Size  int64
}

// Status is a point-in-time summary of this node.
type Status struct {
	NodeID string
	// State is raft's: Leader, Follower, Candidate or Shutdown.
	State  string
	Leader Peer
	Term   uint64
	// CommitIndex is the highest index this node knows committed;
	// AppliedIndex the highest applied to its store; LastLogIndex the
	// highest in its log.
	CommitIndex, AppliedIndex, LastLogIndex uint64
	// Revision is the directory revision applied on this node.
	Revision uint64
	Members  []Member // nil if the configuration could not be read
	// LastContact is when a follower last heard from the leader; zero on
	// the leader and when never.
	LastContact  time.Time
	LastSnapshot SnapshotInfo
	// LogStore is this node's raft log store (Config.LogStore).
	LogStore string

	// Health (alarms.go, consistency.go). Condition is "" while healthy,
	// else one line naming the leading alarm ("Diverged: ...",
	// "Degraded: ..."); Alarms lists every active one. LastConsistencyCheck
	// is nil until this node ran a check.
	Condition            string
	Alarms               []Alarm
	LastConsistencyCheck *ConsistencyReport
	// DataDir is Config.DataDir, for an operator re-seeding the node.
	DataDir string

	// LeaderChanges counts the times this node saw leadership move since it
	// started (a new leader, or a new term); 0 on a stable cluster.
	LeaderChanges uint64
	// LongestStall is the longest this process ran its timers late since
	// it started, and Stalls how many stalls reached half the leader lease
	// (each is logged): CPU starvation that can cost leadership.
	LongestStall time.Duration
	Stalls       uint64
}

// statusTimeout bounds the configuration read inside Status.
const statusTimeout = time.Second

// Status reports this node's view of the cluster.
func (n *Node) Status() Status {
	applied, _ := n.fsm.appliedIndex()
	st := Status{
		NodeID:       n.cfg.NodeID,
		State:        n.raft.State().String(),
		Leader:       n.Leader(),
		Term:         n.raft.CurrentTerm(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: applied,
		LastLogIndex: n.raft.LastIndex(),
		Revision:     n.store.Revision(),
		LogStore:     n.cfg.LogStore,
		Alarms:       n.alarms.list(),
		DataDir:      n.cfg.DataDir,

		LeaderChanges: n.LeaderChanges(),
		LongestStall:  time.Duration(n.stalls.longest.Load()),
		Stalls:        n.stalls.count.Load(),
	}
	st.Condition = conditionOf(st.Alarms)
	if rep, ok := n.LastConsistencyCheck(); ok {
		st.LastConsistencyCheck = &rep
	}
	if n.raft.State() != raft.Leader {
		st.LastContact = n.raft.LastContact()
	}
	if !n.closed.Load() {
		ctx, cancel := context.WithTimeout(n.ctx, statusTimeout)
		st.Members, _ = n.Members(ctx)
		cancel()
	}
	if snaps, err := n.storage.snaps.List(); err == nil && len(snaps) > 0 {
		s := snaps[0]
		st.LastSnapshot = SnapshotInfo{ID: s.ID, Index: s.Index, Term: s.Term, Size: s.Size}
	} else if stats := n.raft.Stats(); stats["last_snapshot_index"] != "0" {
		st.LastSnapshot.Index, _ = strconv.ParseUint(stats["last_snapshot_index"], 10, 64)
		st.LastSnapshot.Term, _ = strconv.ParseUint(stats["last_snapshot_term"], 10, 64)
	}
	return st
}

// TakeSnapshot snapshots the store now and compacts the log behind it
// (keeping TrailingLogs entries). With nothing applied since the last
// snapshot it does nothing.
func (n *Node) TakeSnapshot(ctx context.Context) error {
	if n.closed.Load() {
		return ErrShutdown
	}
	err := waitFuture(ctx, n.raft.Snapshot())
	switch {
	case err == nil, errors.Is(err, raft.ErrNothingNewToSnapshot):
		return nil
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return err
	default:
		return n.raftError("snapshot", err)
	}
}
