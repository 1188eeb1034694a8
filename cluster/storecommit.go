package cluster

import (
	"github.com/hashicorp/raft"
)

// Commit on store: in a cluster of at most three voters, the leader and any
// one other voter are a quorum. raft's replication sends an entry only after
// the leader has written it to its own log (the leader loop stores a batch
// before it moves the last index that replication reads up to; early
// append's batches are sent by earlyappend.go, not through here). So when a
// voter has stored an entry of the leader's current term that reached it in
// raft's AppendEntries, a quorum holds it, and that is raft's commit rule.
// The leader says so in the request: it raises LeaderCommitIndex to the last
// such entry, and the follower, which applies the commit index only after it
// has stored the entries, applies them at once instead of a round trip
// later, when the leader has counted the acknowledgement and told it.
//
// That saves a write forwarded through a follower the acknowledgement, the
// leader's commit and apply, and the reply's trip back (forwardorigin.go
// answers it from the follower's own apply). It also means a follower may
// apply an entry the leader does not yet count as committed: a read index
// on the leader is then its last index, not its commit index (readFloor),
// so that a read begun after such a write was answered waits for it.
//
// The rule is the one raft's leader applies when the acknowledgement comes
// back: only entries of the current term count (an older term's entry on a
// quorum is not committed by that alone, raft §5.4.2), and the leader and
// the follower must be a quorum of the latest configuration, so both are
// voters and it has at most three. hashicorp/raft changes membership one
// server at a time, so the pair also meets every quorum of the
// configuration before it. A request carrying a configuration entry is left
// to raft's own counting.

// storeCommitIndex returns the commit index that lets target apply
// everything in req once it has stored it, or req.LeaderCommitIndex when
// the rule does not apply.
func storeCommitIndex(req *raft.AppendEntriesRequest, servers []raft.Server, leader, target raft.ServerID) uint64 {
	commit := req.LeaderCommitIndex
	if len(req.Entries) == 0 || !voterPairIsQuorum(servers, leader, target) {
		return commit
	}
	for _, e := range req.Entries {
		if e.Type == raft.LogConfiguration {
			return req.LeaderCommitIndex
		}
		if e.Term == req.Term && e.Index > commit {
			commit = e.Index
		}
	}
	return commit
}

// voterPairIsQuorum reports whether a and b are distinct voters of servers
// and servers has at most three voters.
func voterPairIsQuorum(servers []raft.Server, a, b raft.ServerID) bool {
	voters, found := 0, 0
	for _, s := range servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if s.ID == a || s.ID == b {
			found++
		}
	}
	return a != b && found == 2 && voters <= 3
}

// withStoreCommit returns req, or a copy whose LeaderCommitIndex lets id
// apply its entries on storing them.
func (t *raftTransport) withStoreCommit(id raft.ServerID, req *raft.AppendEntriesRequest) *raft.AppendEntriesRequest {
	if t.servers == nil || len(req.Entries) == 0 {
		return req
	}
	commit := storeCommitIndex(req, t.servers(), t.self, id)
	if commit <= req.LeaderCommitIndex {
		return req
	}
	raised := *req
	raised.LeaderCommitIndex = commit
	return &raised
}

// readFloor is the index a linearizable read on the leader must see
// applied: the commit index, or with commit on store the last index, since
// a follower may have applied (and answered) entries up to there that the
// leader has not counted yet.
func (n *Node) readFloor() uint64 {
	if n.cfg.CommitAtLeaderOnly {
		return n.raft.CommitIndex()
	}
	return n.raft.LastIndex()
}

// latestServers is raft's latest configuration (a copy raft keeps for
// readers, not a trip through its loop), or nil when it cannot say.
func (n *Node) latestServers() []raft.Server {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	return f.Configuration().Servers
}
