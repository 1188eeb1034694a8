package cluster

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// earlyAppend lets the followers write a new entry while the leader writes
// it, instead of after.
//
// hashicorp/raft's leader stores a batch (one fsync or two), counts itself
// towards the commit, and only then wakes its replication goroutines, so a
// write waits for the leader's sync, a round trip and a follower's sync in
// series (with bolt here: 0.89 + 0.27 + 1.01 ms of a 2.01 ms write,
// docs/notes/perf.md §3). The Raft thesis (§10.2.1) allows the leader to
// write in parallel with replicating: an entry commits once a majority
// stored it, and the leader counts itself only once its own write
// returned, which raft still does.
//
// earlyAppend wraps the log store raft writes to. When raft stores entries
// of its current term while it leads, the batch goes to as many followers
// as a commit needs besides the leader (targets), each through its own
// sender, which delivers it as an ordinary AppendEntries of that term:
// the consistency check is the entry before the batch, and no commit index
// is carried. A follower holding that entry stores the batch (its fsync now
// overlaps the leader's); raft's own AppendEntries for the same entries
// arrives afterwards, finds them at the same index and term, and is
// answered without a write. A follower that lacks the previous entry
// refuses, and raft replicates to it as before. Answers are only counted:
// commit still comes from raft's own replication, which asks again.
//
// An entry a follower stored early but the leader failed to store is an
// uncommitted entry of a leader that steps down (raft does on a store
// error): the next leader keeps or overwrites it, as with any such entry.
type earlyAppend struct {
	raft.LogStore
	n    *Node
	raft atomic.Pointer[raft.Raft] // set once raft runs

	mu    sync.Mutex
	peers map[raft.ServerID]*earlyPeer
	// stored counts early batches a follower accepted; answered, raft's
	// requests answered from them without being sent.
	stored, answered atomic.Uint64
	// senders counts the sender goroutines started (run).
	senders atomic.Uint64
	// advanced, when set, is closed by the next acknowledgement.
	advanced chan struct{}
}

// earlyPeer is the sender to one voter: at most one AppendEntries in
// flight, the batches offered meanwhile merged into the next. A batch is
// sent only when the follower holds, or is being sent, the entry before
// it: acked is how far any AppendEntries of term succeeded (raft's own
// through the transport included), have adds the early batches queued or
// in flight. A follower behind (restarted, catching up) is left to raft
// instead of refusing a batch per write.
type earlyPeer struct {
	id      raft.ServerID
	addr    raft.ServerAddress
	term    uint64
	acked   uint64
	have    uint64
	pending *raft.AppendEntriesRequest
	running bool
	// sending is set while the sender's request is out; taken, when set,
	// closes as the sender next takes pending (StoreLogs waits on it).
	sending bool
	taken   chan struct{}
	// wake tells a lingering sender that pending was set (buffered, 1).
	wake chan struct{}
	// ackedAt is when acked last advanced.
	ackedAt time.Time
}

// at moves p to term when it is newer, forgetting what p knew of older
// ones, and reports whether term is p's.
func (p *earlyPeer) at(term uint64) bool {
	if term > p.term {
		p.term, p.acked, p.have, p.pending = term, 0, 0, nil
	}
	return term == p.term
}

func newEarlyAppend(n *Node, logs raft.LogStore) *earlyAppend {
	return &earlyAppend{LogStore: logs, n: n, peers: make(map[raft.ServerID]*earlyPeer)}
}

// StoreLogs offers the batch to the followers, waits until each idle
// sender has taken it, then stores it.
//
// The wait is what makes the follower's write overlap the leader's: with
// one Go P (make run's nodes), a sender started here is only runnable, and
// the leader's fsync holds the P for its whole length, so without the hand-off
// the early batch left after the leader's write, behind raft's own
// AppendEntries (seen in an execution trace of a one-connection bench,
// NOTES.md thirteenth session). Blocking here runs the sender, which
// readies this goroutine again when it takes the batch and runs on until
// its request is written and it waits for the answer. With more Ps the two
// run in parallel. A sender busy with an earlier batch is not waited for:
// the batch goes with its next request.
func (e *earlyAppend) StoreLogs(logs []*raft.Log) error {
	if len(logs) > 0 {
		e.handOff(e.offer(logs))
	}
	return e.LogStore.StoreLogs(logs)
}

// maxHandOff bounds how long a store waits for the senders to take its
// batch: only as long as it takes the Go scheduler to run a goroutine.
const maxHandOff = time.Millisecond

// handOff waits until every channel in taken closes, maxHandOff passes or
// the node closes.
func (e *earlyAppend) handOff(taken []<-chan struct{}) {
	if len(taken) == 0 {
		return
	}
	timer := time.NewTimer(maxHandOff)
	defer timer.Stop()
	for _, c := range taken {
		select {
		case <-c:
		case <-timer.C:
			return
		case <-e.n.ctx.Done():
			return
		}
	}
}

// IsMonotonic passes raft's optional MonotonicLogStore through.
func (e *earlyAppend) IsMonotonic() bool {
	m, ok := e.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// offer queues logs for every other voter when raft stores them as leader
// of their term, and returns what to wait on for the senders that will
// take them next (see queue). raft stores from its main goroutine, which
// also sets its state, so State is exact here: a follower storing its
// leader's entries is never Leader.
func (e *earlyAppend) offer(logs []*raft.Log) []<-chan struct{} {
	r := e.raft.Load()
	if r == nil || r.State() != raft.Leader || logs[0].Term != r.CurrentTerm() {
		return nil
	}
	prev := logs[0].Index - 1
	var prevTerm uint64
	if prev > 0 {
		var entry raft.Log
		if e.LogStore.GetLog(prev, &entry) != nil {
			return nil // compacted: raft's replication sends a snapshot or the rest
		}
		prevTerm = entry.Term
	}
	cf := r.GetConfiguration() // answered from a copy, not raft's loop
	if cf.Error() != nil {
		return nil
	}
	req := &raft.AppendEntriesRequest{
		RPCHeader:    e.n.rpcHeader(),
		Term:         logs[0].Term,
		PrevLogEntry: prev,
		PrevLogTerm:  prevTerm,
		Entries:      logs,
		// Committed entries all precede the batch, so the follower
		// commits only entries it holds as the leader does. Carried
		// because raft's own request for the batch may be answered
		// without reaching the follower (answer).
		LeaderCommitIndex: r.CommitIndex(),
	}
	var taken []<-chan struct{}
	for _, s := range e.targets(cf.Configuration().Servers) {
		if c := e.queue(s, req); c != nil {
			taken = append(taken, c)
		}
	}
	return taken
}

// targets are the followers an early batch goes to: as many voters as a
// commit needs besides the leader, those whose logs reach furthest. The
// rest get it from raft after the leader's write, so the disk (shared by
// every node of a test cluster) serves no more syncs at once than needed.
func (e *earlyAppend) targets(servers []raft.Server) []raft.Server {
	self := raft.ServerID(e.n.cfg.NodeID)
	voters := 0
	var others []raft.Server
	for _, s := range servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if s.ID != self {
			others = append(others, s)
		}
	}
	e.mu.Lock()
	slices.SortFunc(others, func(a, b raft.Server) int {
		return cmp.Compare(e.peer(b.ID).acked, e.peer(a.ID).acked)
	})
	e.mu.Unlock()
	return others[:min(len(others), voters/2)]
}

// targeted reports whether id is among the followers early batches go to
// now (targets); true when that cannot be said.
func (e *earlyAppend) targeted(id raft.ServerID) bool {
	r := e.raft.Load()
	if r == nil {
		return true
	}
	cf := r.GetConfiguration()
	if cf.Error() != nil {
		return true
	}
	return slices.ContainsFunc(e.targets(cf.Configuration().Servers), func(s raft.Server) bool { return s.ID == id })
}

// queue makes req the next request to s, appended to the one waiting when
// it continues it, and starts the sender unless it runs. Unless the sender
// is busy with a request, it returns a channel that closes when the sender
// takes req.
func (e *earlyAppend) queue(s raft.Server, req *raft.AppendEntriesRequest) <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.peer(s.ID)
	p.addr = s.Address
	if !p.at(req.Term) || req.PrevLogEntry > p.have {
		return nil
	}
	if w := p.pending; w != nil && lastIndex(w) == req.PrevLogEntry {
		merged := *w
		merged.Entries = append(slices.Clip(w.Entries), req.Entries...)
		merged.LeaderCommitIndex = req.LeaderCommitIndex
		req = &merged
	}
	p.pending = req
	p.have = max(p.have, lastIndex(req))
	if !p.running {
		p.running = true
		e.senders.Add(1)
		e.n.goFunc(func() { e.run(p) })
	} else {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	if p.sending {
		return nil
	}
	if p.taken == nil {
		p.taken = make(chan struct{})
	}
	return p.taken
}

// acked records that id holds the leader's log up to the end of req, which
// it accepted: the transport calls it for every successful AppendEntries.
func (e *earlyAppend) acked(id raft.ServerID, req *raft.AppendEntriesRequest) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.peer(id); p.at(req.Term) && lastIndex(req) > p.acked {
		p.acked, p.ackedAt = lastIndex(req), time.Now()
		p.have = max(p.have, p.acked)
	}
	e.wakeLocked()
}

// wakeLocked wakes whoever waits in waitFor: a peer's state changed.
func (e *earlyAppend) wakeLocked() {
	if e.advanced != nil {
		close(e.advanced)
		e.advanced = nil
	}
}

// waitHolds waits until id acknowledged the leader's log up to index in
// the latest term seen, or ctx ends, and reports which.
func (e *earlyAppend) waitHolds(ctx context.Context, id raft.ServerID, index uint64) bool {
	return e.waitFor(ctx, id, func(p *earlyPeer) (bool, bool) {
		return p.acked >= index, p.acked >= index
	})
}

// waitFor waits until decide, called with e.mu held on id's peer each time
// its state changes, reports decided, or ctx ends (false).
func (e *earlyAppend) waitFor(ctx context.Context, id raft.ServerID, decide func(*earlyPeer) (ok, decided bool)) bool {
	for {
		e.mu.Lock()
		if ok, decided := decide(e.peer(id)); decided {
			e.mu.Unlock()
			return ok
		}
		if e.advanced == nil {
			e.advanced = make(chan struct{})
		}
		advanced := e.advanced
		e.mu.Unlock()
		select {
		case <-advanced:
		case <-ctx.Done():
			return false
		}
	}
}

// answerWait bounds how long raft's own AppendEntries waits for the
// answer to an early batch that carries its entries.
const answerWait = 50 * time.Millisecond

// freshAck is how recent an early acknowledgement must be to answer raft's
// request: the answer also tells raft the follower is in contact, which
// its leader lease and quorum check rely on (LeaderLeaseTimeout ≥ 100 ms).
const freshAck = 20 * time.Millisecond

// answer answers req, raft's own AppendEntries to id, without sending it
// when an early batch already put its entries on id, and reports whether
// it did.
//
// After the leader's write, raft replicates the entries the early batch
// already gave the follower, and the follower answers without writing: a
// round trip between processes (0.1–0.25 ms here, execution traces in
// NOTES.md thirteenth session) for an answer the leader already has. A
// follower that accepted any AppendEntries of term T holds the leader's
// log up to its last entry, and the leader's log of T is never rewritten
// in T, so that acknowledgement is raft's matchIndex, whenever raft hears
// of it. answer therefore reports success when id acknowledged req's last
// entry in req's term within freshAck, waiting up to answerWait when the
// early batch carrying it is still in flight. It leaves to the transport
// a request without entries (heartbeats and commit pushes carry
// liveness and the commit index), one whose early batch was refused or
// never sent, and a stale acknowledgement. The follower misses raft's
// commit index in the request; the early batch carried the one before it,
// and commitPusher tells it of the rest when writes stop.
func (e *earlyAppend) answer(id raft.ServerID, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) bool {
	if len(req.Entries) == 0 {
		return false
	}
	last := lastIndex(req)
	ctx, cancel := context.WithTimeout(e.n.ctx, answerWait)
	defer cancel()
	ok := e.waitFor(ctx, id, func(p *earlyPeer) (bool, bool) {
		switch {
		case p.term != req.Term:
			return false, true
		case p.acked >= last:
			return time.Since(p.ackedAt) <= freshAck, true
		case p.have < last: // not carried by an early batch, or refused
			return false, true
		}
		return false, false
	})
	if !ok {
		return false
	}
	*resp = raft.AppendEntriesResponse{
		RPCHeader: raft.RPCHeader{ProtocolVersion: req.ProtocolVersion, ID: []byte(id)},
		Term:      req.Term,
		LastLog:   last,
		Success:   true,
	}
	e.answered.Add(1)
	return true
}

func (e *earlyAppend) peer(id raft.ServerID) *earlyPeer {
	p := e.peers[id]
	if p == nil {
		p = &earlyPeer{id: id, wake: make(chan struct{}, 1)}
		e.peers[id] = p
	}
	return p
}

// linger waits for p's next batch and reports whether one was queued;
// false once senderLinger passed or the node closed.
func (e *earlyAppend) linger(p *earlyPeer, idle *time.Timer) bool {
	idle.Reset(senderLinger)
	select {
	case <-p.wake:
		return true
	case <-idle.C:
		return false
	case <-e.n.ctx.Done():
		return false
	}
}

// lastIndex is the index of the last entry req leaves its receiver with.
func lastIndex(req *raft.AppendEntriesRequest) uint64 {
	return req.PrevLogEntry + uint64(len(req.Entries))
}

// senderLinger is how long an early sender waits for the next batch
// before it ends. A sender started afresh for each batch grew its stack
// anew while encoding it (msgpack recursion, the transport's calls), and
// copying stacks took 8 % of the leader's CPU at one connection, on the
// path of every write (docs/notes/perf.md §13).
const senderLinger = 5 * time.Second

// run sends p's waiting requests until none has come for senderLinger or
// the node closes.
func (e *earlyAppend) run(p *earlyPeer) {
	idle := time.NewTimer(senderLinger)
	defer idle.Stop()
	lingered := false
	for {
		e.mu.Lock()
		req, addr := p.pending, p.addr
		p.pending = nil
		if p.taken != nil {
			close(p.taken)
			p.taken = nil
		}
		p.sending = req != nil && e.n.ctx.Err() == nil
		if !p.sending {
			if lingered || e.n.ctx.Err() != nil {
				p.running = false
				e.mu.Unlock()
				return
			}
			e.mu.Unlock()
			lingered = !e.linger(p, idle)
			continue
		}
		lingered = false
		e.mu.Unlock()
		var resp raft.AppendEntriesResponse
		if err := e.n.trans.send(p.id, addr, req, &resp); err == nil && resp.Success {
			e.stored.Add(1)
			continue
		}
		// What waits continues the refused batch: it would be refused too.
		e.mu.Lock()
		if p.term == req.Term {
			p.have, p.pending = p.acked, nil
		}
		e.wakeLocked()
		e.mu.Unlock()
	}
}
