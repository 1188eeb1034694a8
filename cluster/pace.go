package cluster

import (
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// pace holds back raft's AppendEntries to the followers a commit does not
// need, so that they store several entries with one sync instead of one
// sync per entry (Config.FollowerHold).
//
// With three voters a commit needs the leader and one follower. raft sends
// each new entry to both at once, and when their logs share a disk (make
// run, a test host) the second follower's sync competes with the one the
// commit waits for and with the leader's next one: at one MUPDATE
// connection the leader's sync took 0.38 ms and a follower's 0.47 ms on
// average, against 0.19 ms for a sync alone on this disk (NOTES.md,
// fifteenth session). pace picks the followers a commit needs (voters/2:
// with early append the ones early batches go to, else the first to be
// sent one, kept while they answer promptly) and makes raft's request to
// any other wait up to hold; the request then carries every entry the
// leader stored meanwhile, which raft credits to that follower when it
// acknowledges.
//
// A preferred follower that fails a request or leaves one unanswered for
// longer than hold loses its place to the follower whose request is held,
// which is then sent at once: a slow or dead follower costs at most one
// hold of commit latency.
type pace struct {
	n    *Node
	hold time.Duration
	// early, with early append, decides who is preferred: the followers
	// early batches go to, those whose logs reach furthest (targets). A
	// preferred one that stops answering falls behind the held one, whose
	// batches still arrive, and the two change places.
	early *earlyAppend

	mu        sync.Mutex
	preferred []raft.ServerID
	// sent is when each follower's request with entries went out, zero
	// once it was answered; failed, whether its last one failed.
	sent   map[raft.ServerID]time.Time
	failed map[raft.ServerID]bool
}

func newPace(n *Node, hold time.Duration, early *earlyAppend) *pace {
	return &pace{n: n, hold: hold, early: early, sent: map[raft.ServerID]time.Time{}, failed: map[raft.ServerID]bool{}}
}

// before is called with raft's request to id before it is sent. A request
// with entries to a follower the commit does not need waits up to hold and
// is extended to every entry stored meanwhile. Requests that do not end at
// the leader's last entry (a follower catching up) are not held.
func (p *pace) before(id raft.ServerID, req *raft.AppendEntriesRequest) {
	if len(req.Entries) == 0 || req.Entries[len(req.Entries)-1].Index < p.n.raft.LastIndex() {
		return // a heartbeat, or a follower catching up: never held
	}
	deadline := time.Now().Add(p.hold)
	for p.held(id) {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		time.Sleep(min(left, p.hold/4))
	}
	p.extend(req)
	p.mu.Lock()
	p.sent[id] = time.Now()
	p.mu.Unlock()
}

// after records how id answered.
func (p *pace) after(id raft.ServerID, req *raft.AppendEntriesRequest, ok bool) {
	if len(req.Entries) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent[id] = time.Time{}
	p.failed[id] = !ok
}

// held reports whether a request to id should wait: id is not among the
// preferred followers and those are answering.
func (p *pace) held(id raft.ServerID) bool {
	if p.early != nil {
		return !p.early.targeted(id)
	}
	voters, need, err := p.n.quorumPeers()
	isVoter := func(f raft.ServerID) bool {
		return slices.ContainsFunc(voters, func(s raft.Server) bool { return s.ID == f })
	}
	if err != nil || !isVoter(id) {
		return false // a non-voter is never needed; raft's pace is fine for it
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	healthy := func(f raft.ServerID) bool {
		s := p.sent[f]
		return isVoter(f) && !p.failed[f] && (s.IsZero() || now.Sub(s) < p.hold)
	}
	p.preferred = slices.DeleteFunc(p.preferred, func(f raft.ServerID) bool { return !healthy(f) })
	if slices.Contains(p.preferred, id) {
		return false
	}
	if len(p.preferred) < need {
		p.preferred = append(p.preferred, id)
		return false
	}
	return true
}

// extend appends to req the entries after its last that the leader has
// stored since raft built it (raft's last index moves only once they are
// stored), and the commit index known now. raft credits the follower with
// req.Entries as they are after the call.
func (p *pace) extend(req *raft.AppendEntriesRequest) {
	r := p.n.raft
	last := req.Entries[len(req.Entries)-1].Index
	upto := min(r.LastIndex(), last+uint64(p.n.cfg.MaxAppendEntries)-uint64(len(req.Entries)))
	for i := last + 1; i <= upto; i++ {
		var l raft.Log
		if err := p.n.storage.logs.GetLog(i, &l); err != nil || l.Term != req.Term {
			break // compacted, or not of this term: raft sends it itself
		}
		req.Entries = append(req.Entries, &l)
	}
	req.LeaderCommitIndex = max(req.LeaderCommitIndex, r.CommitIndex())
}
