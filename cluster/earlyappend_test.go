package cluster

import (
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// heldLogs is a log store whose next append, once armed, waits until
// released: the leader's fsync made as long as a test needs.
type heldLogs struct {
	raft.LogStore
	armed   atomic.Bool
	index   atomic.Uint64 // last index of the held append
	entered chan struct{}
	release chan struct{}
}

func newHeldLogs() *heldLogs {
	return &heldLogs{LogStore: raft.NewInmemStore(), entered: make(chan struct{}), release: make(chan struct{})}
}

func (h *heldLogs) StoreLogs(logs []*raft.Log) error {
	if h.armed.CompareAndSwap(true, false) {
		h.index.Store(logs[len(logs)-1].Index)
		close(h.entered)
		<-h.release
	}
	return h.LogStore.StoreLogs(logs)
}

// TestAQuorumStoresAnEntryWhileTheLeaderWritesIt holds the leader's append
// of a write and watches the followers' logs. With early append as many
// followers as a commit needs besides the leader (one of two) store the
// entry while the leader's write is still under way, and the write still
// does not commit until the leader's own append returns: the leader counts
// towards the commit only once it has stored the entry. With raft's own
// order no follower gets it until then.
func TestAQuorumStoresAnEntryWhileTheLeaderWritesIt(t *testing.T) {
	for _, tc := range []struct {
		name         string
		persistFirst bool
		early        int // followers holding the entry before the leader does
	}{
		{name: "early append", early: 1},
		{name: "persist before replicate", persistFirst: true, early: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := map[string]*heldLogs{}
			c := newTestCluster(t, 3, func(cfg *Config) {
				h := newHeldLogs()
				logs[cfg.NodeID] = h
				cfg.Stores = &Stores{Logs: h, Stable: raft.NewInmemStore(), Snapshots: raft.NewInmemSnapshotStore()}
				cfg.PersistBeforeReplicate = tc.persistFirst
			})
			leader := c.leader()
			mustApply(t, leader.node, activate(1))
			held := logs[leader.cfg.NodeID]
			held.armed.Store(true)
			released := false
			defer func() {
				if !released {
					close(held.release)
				}
			}()

			done := make(chan error, 1)
			go func() {
				_, err := leader.node.Apply(testCtx(t), []fsm.Command{activate(2)})
				done <- err
			}()
			select {
			case <-held.entered:
			case <-time.After(10 * time.Second):
				t.Fatal("the leader never appended the write")
			}
			index := held.index.Load()

			// Wait for the early ones, then long enough for any other to show.
			holding := followersHolding(c, index, tc.early, 2*time.Second)
			if got := followersHolding(c, index, len(c.nodes), 300*time.Millisecond); got != tc.early || holding != tc.early {
				t.Fatalf("%d followers hold index %d while the leader writes it, want %d", got, index, tc.early)
			}
			select {
			case err := <-done:
				t.Fatalf("the write finished (%v) before the leader stored its entry", err)
			default:
			}

			close(held.release)
			released = true
			if err := <-done; err != nil {
				t.Fatalf("write after the leader's append returned: %v", err)
			}
			if got := leader.node.early != nil && leader.node.early.stored.Load() > 0; got != (tc.early > 0) {
				t.Errorf("early appends accepted: %v, want %v", got, tc.early > 0)
			}
		})
	}
}

// followersHolding waits up to wait for want followers to hold index and
// returns how many do.
func followersHolding(c *testCluster, index uint64, want int, wait time.Duration) int {
	deadline := time.Now().Add(wait)
	for {
		n := 0
		for _, f := range c.followers() {
			if f.node.raft.LastIndex() >= index {
				n++
			}
		}
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEarlyAppendGoesToTheFollowersAQuorumNeeds picks, among the voters,
// as many followers as a commit needs besides the leader, those whose logs
// reach furthest; non-voters never.
func TestEarlyAppendGoesToTheFollowersAQuorumNeeds(t *testing.T) {
	voter := func(id string) raft.Server { return raft.Server{ID: raft.ServerID(id), Suffrage: raft.Voter} }
	for _, tc := range []struct {
		name    string
		servers []raft.Server
		acked   map[raft.ServerID]uint64
		want    []raft.ServerID
	}{
		{name: "alone", servers: []raft.Server{voter("n1")}},
		{name: "three voters, furthest follower", servers: []raft.Server{voter("n1"), voter("n2"), voter("n3")},
			acked: map[raft.ServerID]uint64{"n2": 7, "n3": 9}, want: []raft.ServerID{"n3"}},
		{name: "five voters, two furthest", servers: []raft.Server{voter("n1"), voter("n2"), voter("n3"), voter("n4"), voter("n5")},
			acked: map[raft.ServerID]uint64{"n2": 3, "n3": 9, "n4": 8, "n5": 1}, want: []raft.ServerID{"n3", "n4"}},
		{name: "non-voter not counted or chosen", servers: []raft.Server{voter("n1"), voter("n2"), {ID: "n9", Suffrage: raft.Nonvoter}},
			acked: map[raft.ServerID]uint64{"n9": 99}, want: []raft.ServerID{"n2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEarlyAppend(&Node{cfg: Config{NodeID: "n1"}}, nil)
			for id, index := range tc.acked {
				e.acked(id, &raft.AppendEntriesRequest{Term: 2, PrevLogEntry: index})
			}
			var got []raft.ServerID
			for _, s := range e.targets(tc.servers) {
				got = append(got, s.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("targets %v, want %v", got, tc.want)
			}
		})
	}
}

// TestEarlyAppendSkipsAFollowerWithoutThePreviousEntry: a follower whose
// log is not known to reach the entry before a batch (behind, restarted,
// or a batch of an older term) is left to raft's own replication instead
// of being sent a batch it would refuse.
func TestEarlyAppendSkipsAFollowerWithoutThePreviousEntry(t *testing.T) {
	e := newEarlyAppend(&Node{cfg: Config{NodeID: "n1"}}, nil)
	s := raft.Server{ID: "n2", Suffrage: raft.Voter}
	e.acked(s.ID, &raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 10})
	for _, req := range []*raft.AppendEntriesRequest{
		{Term: 3, PrevLogEntry: 12, Entries: []*raft.Log{{Index: 13, Term: 3}}}, // 11 and 12 unknown
		{Term: 2, PrevLogEntry: 10, Entries: []*raft.Log{{Index: 11, Term: 2}}}, // older term
	} {
		e.queue(s, req)
		if p := e.peers[s.ID]; p.pending != nil || p.running || p.have != 10 {
			t.Fatalf("after offering %d..: pending %v, running %v, have %d", req.PrevLogEntry+1, p.pending, p.running, p.have)
		}
	}
}

// handedLogs is a log store that records, for each append, whether the
// node's transport had by then been handed an AppendEntries carrying the
// appended entries.
type handedLogs struct {
	raft.LogStore
	handed   *atomic.Uint64 // highest entry index handed to the transport
	watching atomic.Bool
	appends  atomic.Int64
	before   atomic.Int64 // appends whose entries were handed over first
}

func (h *handedLogs) StoreLogs(logs []*raft.Log) error {
	if h.watching.Load() && len(logs) > 0 {
		h.appends.Add(1)
		if h.handed.Load() >= logs[len(logs)-1].Index {
			h.before.Add(1)
		}
	}
	return h.LogStore.StoreLogs(logs)
}

// TestTheEarlyBatchIsSentBeforeTheLeaderStoresIt runs the nodes on one Go P,
// as make run does, and checks that every write's entries were handed to
// the transport for a follower before the leader's own append began. A
// sender that is merely started stays runnable while the leader's fsync
// holds the P, and its batch then leaves after the leader's write, which
// is what an execution trace showed before StoreLogs waited for the hand-off.
// raft's own AppendEntries for an entry starts only after the leader's
// append, so what was handed over first is the early batch.
func TestTheEarlyBatchIsSentBeforeTheLeaderStoresIt(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	stores := map[string]*handedLogs{}
	c := newTestCluster(t, 3, func(cfg *Config) {
		inner, _, err := newTransport(cfg.RaftAddr, "", nil, cfg.RaftSecret, cfg.Logger)
		if err != nil {
			t.Fatal(err)
		}
		ft := newFaultTransport(inner)
		h := &handedLogs{LogStore: raft.NewInmemStore(), handed: new(atomic.Uint64)}
		ft.setRule(func(_ raft.ServerID, req any) fault {
			if ae, ok := req.(*raft.AppendEntriesRequest); ok && len(ae.Entries) > 0 {
				for {
					old := h.handed.Load()
					if lastIndex(ae) <= old || h.handed.CompareAndSwap(old, lastIndex(ae)) {
						break
					}
				}
			}
			return fault{}
		})
		cfg.Transport = ft
		stores[cfg.NodeID] = h
		cfg.Stores = &Stores{Logs: h, Stable: raft.NewInmemStore(), Snapshots: raft.NewInmemSnapshotStore()}
	})
	leader := c.leader()
	h := stores[leader.cfg.NodeID]
	h.watching.Store(true)
	const writes = 20
	for i := range writes {
		mustApply(t, leader.node, activate(i))
	}
	if got := h.before.Load(); got != h.appends.Load() || got < writes {
		t.Fatalf("%d of the leader's %d appends began after their entries were handed to a follower, want all (≥ %d)", got, h.appends.Load(), writes)
	}
}

// TestRaftsRequestIsAnsweredFromAFreshEarlyAcknowledgement drives answer
// through the states of one follower's early sender: raft's own
// AppendEntries is answered without being sent only when the follower
// acknowledged its last entry, in its term, at most freshAck ago, waiting
// for an early batch still in flight; everything else goes to the follower.
func TestRaftsRequestIsAnsweredFromAFreshEarlyAcknowledgement(t *testing.T) {
	entries := func(from, to uint64) []*raft.Log {
		var logs []*raft.Log
		for i := from; i <= to; i++ {
			logs = append(logs, &raft.Log{Index: i, Term: 4})
		}
		return logs
	}
	req := &raft.AppendEntriesRequest{Term: 4, PrevLogEntry: 10, PrevLogTerm: 4, Entries: entries(11, 12), LeaderCommitIndex: 10}
	for _, tc := range []struct {
		name  string
		req   *raft.AppendEntriesRequest
		setup func(e *earlyAppend, p *earlyPeer)
		later func(e *earlyAppend) // runs while answer waits
		want  bool
	}{
		{name: "acknowledged just now", req: req, want: true,
			setup: func(_ *earlyAppend, p *earlyPeer) { p.acked, p.have, p.ackedAt = 12, 12, time.Now() }},
		{name: "acknowledged beyond the request", req: req, want: true,
			setup: func(_ *earlyAppend, p *earlyPeer) { p.acked, p.have, p.ackedAt = 14, 14, time.Now() }},
		{name: "acknowledgement too old", req: req,
			setup: func(_ *earlyAppend, p *earlyPeer) { p.acked, p.have, p.ackedAt = 12, 12, time.Now().Add(-2*freshAck) }},
		{name: "acknowledged only part", req: req,
			setup: func(_ *earlyAppend, p *earlyPeer) { p.acked, p.have, p.ackedAt = 11, 11, time.Now() }},
		{name: "acknowledged in an older term", req: &raft.AppendEntriesRequest{Term: 5, PrevLogEntry: 10, Entries: entries(11, 12)},
			setup: func(_ *earlyAppend, p *earlyPeer) { p.acked, p.have, p.ackedAt = 12, 12, time.Now() }},
		{name: "heartbeat", req: &raft.AppendEntriesRequest{Term: 4, PrevLogEntry: 12, LeaderCommitIndex: 12},
			setup: func(_ *earlyAppend, p *earlyPeer) { p.acked, p.have, p.ackedAt = 12, 12, time.Now() }},
		{name: "early batch in flight, then accepted", req: req, want: true,
			setup: func(_ *earlyAppend, p *earlyPeer) { p.acked, p.have = 10, 12 },
			later: func(e *earlyAppend) {
				e.acked("n2", &raft.AppendEntriesRequest{Term: 4, PrevLogEntry: 10, Entries: entries(11, 12)})
			}},
		{name: "early batch in flight, then refused", req: req,
			setup: func(_ *earlyAppend, p *earlyPeer) { p.acked, p.have = 10, 12 },
			later: func(e *earlyAppend) {
				e.mu.Lock()
				p := e.peer("n2")
				p.have = p.acked
				e.wakeLocked()
				e.mu.Unlock()
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEarlyAppend(&Node{cfg: Config{NodeID: "n1"}, ctx: testCtx(t)}, nil)
			e.mu.Lock()
			p := e.peer("n2")
			p.term = 4
			tc.setup(e, p)
			e.mu.Unlock()
			if tc.later != nil {
				go func() {
					time.Sleep(5 * time.Millisecond)
					tc.later(e)
				}()
			}
			var resp raft.AppendEntriesResponse
			got := e.answer("n2", tc.req, &resp)
			if got != tc.want {
				t.Fatalf("answered %v, want %v", got, tc.want)
			}
			if got && (!resp.Success || resp.Term != tc.req.Term || resp.LastLog != lastIndex(tc.req)) {
				t.Fatalf("response %+v, want success in term %d up to %d", resp, tc.req.Term, lastIndex(tc.req))
			}
			if n := e.answered.Load(); n != map[bool]uint64{true: 1}[got] {
				t.Fatalf("answered counter %d", n)
			}
		})
	}
}

// entrySends counts the AppendEntries carrying entries a transport sent.
func entrySends(ft *faultTransport, count *atomic.Int64) {
	ft.setRule(func(_ raft.ServerID, req any) fault {
		if ae, ok := req.(*raft.AppendEntriesRequest); ok && len(ae.Entries) > 0 {
			count.Add(1)
		}
		return fault{}
	})
}

// TestAWriteReachesEachFollowerOnce: with early append, one writer's
// entries go to the early follower in the early batch only (raft's own
// request is answered from its acknowledgement) and to the other follower
// in raft's request; every follower still commits and applies every write.
// Without answer, each write reaches the early follower twice.
func TestAWriteReachesEachFollowerOnce(t *testing.T) {
	sends := map[string]*atomic.Int64{}
	c := newTestCluster(t, 3, func(cfg *Config) {
		inner, _, err := newTransport(cfg.RaftAddr, "", nil, cfg.RaftSecret, cfg.Logger)
		if err != nil {
			t.Fatal(err)
		}
		ft := newFaultTransport(inner)
		sends[cfg.NodeID] = new(atomic.Int64)
		entrySends(ft, sends[cfg.NodeID])
		cfg.Transport = ft
	})
	leader := c.leader()
	mustApply(t, leader.node, activate(0))
	before := sends[leader.cfg.NodeID].Load()
	const writes = 40
	for i := range writes {
		mustApply(t, leader.node, activate(i+1))
	}
	sent := sends[leader.cfg.NodeID].Load() - before
	answered := leader.node.early.answered.Load()
	if answered < writes/2 || sent > writes*5/2 {
		t.Fatalf("%d writes: %d AppendEntries with entries sent, %d answered from early acknowledgements; want about %d and %d",
			writes, sent, answered, 2*writes, writes)
	}
	index := leader.node.raft.LastIndex()
	for _, f := range c.followers() {
		mustApplyWithin(t, f, index)
	}
}

// TestAnEarlySenderCarriesBatchAfterBatch: the goroutine that sends a
// follower its early batches waits for the next one instead of ending, so
// writes one after another do not each start a sender whose stack must
// grow again while it encodes (perf.md §13).
func TestAnEarlySenderCarriesBatchAfterBatch(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader().node
	if leader.early == nil {
		t.Fatal("early append is off in the test configuration")
	}
	mustApply(t, leader, activate(0))
	before := leader.early.senders.Load()
	const writes = 30
	for i := range writes {
		mustApply(t, leader, activate(i+1))
	}
	if started := leader.early.senders.Load() - before; started > 2 {
		t.Fatalf("%d writes one after another started %d early senders, want at most one per follower", writes, started)
	}
	if leader.early.stored.Load() == 0 {
		t.Fatal("no early batch was stored")
	}
}
