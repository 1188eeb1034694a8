package cluster

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Read modes (Config.ReadMode).
const (
	// ReadLinearizable confirms leadership with a heartbeat round for every
	// batch of reads on the leader. It assumes nothing about clocks.
	ReadLinearizable = "linearizable"
	// ReadLease lets the leader answer reads locally while a lease taken
	// from its followers' acknowledgements holds, and falls back to a
	// heartbeat round when it does not. It assumes the clocks of the
	// members run at rates that differ by less than Config.LeaseMaxDrift
	// (docs/raft-timeouts.md, "Reads").
	ReadLease = "lease"
)

// leaseMargin is taken off every lease on top of the drift allowance.
const leaseMargin = 5 * time.Millisecond

// LeaseClock is the clock a read lease is measured on. Only differences
// between its readings matter, so it must be monotonic: wall-clock steps
// must not move it.
type LeaseClock interface {
	Now() time.Time
}

// monotonicClock is time.Now, whose differences use Go's monotonic clock.
type monotonicClock struct{}

func (monotonicClock) Now() time.Time { return time.Now() }

// lease is the leader's read lease. hashicorp/raft followers refuse votes
// and pre-votes while they know a leader, and forget it only after a full
// HeartbeatTimeout without hearing from it. So once a quorum (the leader
// counting itself) has acknowledged AppendEntries of the leader's term that
// it sent at time t, no other leader can exist before t+HeartbeatTimeout,
// and the leader may answer reads alone until t+span on its own clock,
// span being that timeout shortened by the drift allowance and a margin.
type lease struct {
	clock LeaseClock
	span  time.Duration

	mu      sync.Mutex
	term    uint64 // the term the fields below are about
	revoked bool   // no lease for the rest of term
	// voters are the other voters of the configuration; nil while not
	// known, which means no lease.
	voters []raft.ServerID
	// acks holds, per follower, when the newest AppendEntries of term that
	// it acknowledged was sent.
	acks map[raft.ServerID]time.Time
}

func newLease(clock LeaseClock, heartbeat time.Duration, maxDrift float64) *lease {
	span := time.Duration(float64(heartbeat)*(1-maxDrift)) - leaseMargin
	return &lease{clock: clock, span: span, acks: make(map[raft.ServerID]time.Time)}
}

// at moves the lease to term (a newer term forgets everything) and reports
// whether it is about term now. Call with mu held.
func (l *lease) at(term uint64) bool {
	if term > l.term {
		l.term, l.revoked, l.voters = term, false, nil
		clear(l.acks)
	}
	return term == l.term
}

// acked records that id acknowledged an AppendEntries of term sent at sent.
func (l *lease) acked(id raft.ServerID, term uint64, sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at(term) && sent.After(l.acks[id]) {
		l.acks[id] = sent
	}
}

// revoke ends the lease for the rest of term: a leadership transfer lets
// followers vote although they know a leader, and a leader that stepped
// down must not answer again from acknowledgements it had.
func (l *lease) revoke(term uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at(term) {
		l.revoked = true
	}
}

// setVoters records the configuration's voters other than self; nil
// (while a membership change is under way) suspends the lease.
func (l *lease) setVoters(term uint64, voters []raft.ServerID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at(term) {
		l.voters = voters
	}
}

// valid reports whether the lease of term holds now.
func (l *lease) valid(term uint64) bool {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if term != l.term || l.revoked || l.voters == nil {
		return false
	}
	// A quorum of the len(voters)+1 servers is the leader and need others.
	need := (len(l.voters) + 1) / 2
	if need == 0 {
		return true
	}
	sent := make([]time.Time, 0, len(l.voters))
	for _, id := range l.voters {
		if t, ok := l.acks[id]; ok {
			sent = append(sent, t)
		}
	}
	if len(sent) < need {
		return false
	}
	slices.SortFunc(sent, func(a, b time.Time) int { return b.Compare(a) })
	return now.Before(sent[need-1].Add(l.span))
}

// leaseIndex is the read index the lease gives: the commit index, when
// this node leads, has applied an entry of its term, and holds the lease.
func (n *Node) leaseIndex() (uint64, bool) {
	if n.lease == nil || n.raft.State() != raft.Leader {
		return 0, false
	}
	term := n.raft.CurrentTerm()
	if ready, _ := n.lead.ready(); ready != term || !n.lease.valid(term) {
		return 0, false
	}
	return n.raft.CommitIndex(), true
}

// leaderIndex is a read index on the leader: from the lease when it
// holds, else from a heartbeat round.
func (n *Node) leaderIndex(ctx context.Context) (uint64, error) {
	index, ok := n.leaseIndex()
	if f := n.cfg.Hooks.LeaderRead; f != nil {
		f(ok)
	}
	if ok {
		return index, nil
	}
	return n.leaderReads.do(ctx)
}

// refreshLeaseVoters gives the lease the current configuration's voters.
func (n *Node) refreshLeaseVoters() {
	if n.lease == nil {
		return
	}
	term := n.raft.CurrentTerm()
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	voters := []raft.ServerID{} // none other is known, not unknown
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && s.ID != raft.ServerID(n.cfg.NodeID) {
			voters = append(voters, s.ID)
		}
	}
	n.lease.setVoters(term, voters)
}

// changingMembers suspends the lease while the configuration changes and
// returns what resumes it with the new one. A lease counted against an
// old configuration is sound for one change (its quorums meet every quorum
// of the next) but not across several.
func (n *Node) changingMembers() (done func()) {
	if n.lease == nil {
		return func() {}
	}
	n.lease.setVoters(n.raft.CurrentTerm(), nil)
	return n.refreshLeaseVoters
}

// waitVoteFence keeps a node in lease mode from starting raft for a
// HeartbeatTimeout: a restarted node remembers no leader and would vote at
// once, inside a lease it acknowledged before it went down.
func waitVoteFence(ctx context.Context, cfg Config) error {
	if cfg.ReadMode != ReadLease {
		return nil
	}
	t := time.NewTimer(cfg.HeartbeatTimeout)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
