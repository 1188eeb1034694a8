package cluster

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// manualClock is a lease clock that moves only when the test says.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func newManualClock() *manualClock { return &manualClock{now: time.Unix(1000, 0)} }

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestLeaseHoldsWhileAQuorumAcknowledgedWithinItsSpan(t *testing.T) {
	const hb = 200 * time.Millisecond
	span := time.Duration(float64(hb)*0.9) - leaseMargin
	three := []raft.ServerID{"b", "c"}
	five := []raft.ServerID{"b", "c", "d", "e"}
	tests := []struct {
		name  string
		setup func(l *lease, now time.Time) // the lease is about term 2 unless setup moves it
		term  uint64                        // asked about
		want  bool
	}{
		{"one of two followers acknowledged just now", func(l *lease, now time.Time) {
			l.setVoters(2, three)
			l.acked("b", 2, now)
		}, 2, true},
		{"acknowledged just inside the span", func(l *lease, now time.Time) {
			l.setVoters(2, three)
			l.acked("b", 2, now.Add(-span+time.Millisecond))
		}, 2, true},
		{"acknowledged a span ago", func(l *lease, now time.Time) {
			l.setVoters(2, three)
			l.acked("b", 2, now.Add(-span))
		}, 2, false},
		{"an older acknowledgement does not replace a newer one", func(l *lease, now time.Time) {
			l.setVoters(2, three)
			l.acked("b", 2, now)
			l.acked("b", 2, now.Add(-span))
		}, 2, true},
		{"no acknowledgement", func(l *lease, now time.Time) { l.setVoters(2, three) }, 2, false},
		{"voters not known", func(l *lease, now time.Time) {
			l.acked("b", 2, now)
			l.acked("c", 2, now)
		}, 2, false},
		{"suspended for a membership change", func(l *lease, now time.Time) {
			l.setVoters(2, three)
			l.acked("b", 2, now)
			l.setVoters(2, nil)
		}, 2, false},
		{"revoked", func(l *lease, now time.Time) {
			l.setVoters(2, three)
			l.acked("b", 2, now)
			l.revoke(2)
		}, 2, false},
		{"revoked for the rest of the term", func(l *lease, now time.Time) {
			l.setVoters(2, three)
			l.revoke(2)
			l.acked("b", 2, now)
		}, 2, false},
		{"asked about another term", func(l *lease, now time.Time) {
			l.setVoters(2, three)
			l.acked("b", 2, now)
		}, 3, false},
		{"a newer term forgets the older one's acknowledgements", func(l *lease, now time.Time) {
			l.setVoters(2, three)
			l.acked("b", 2, now)
			l.setVoters(3, three)
		}, 3, false},
		{"an older term's acknowledgement is ignored", func(l *lease, now time.Time) {
			l.setVoters(3, three)
			l.acked("b", 2, now)
		}, 3, false},
		{"a non-voter's acknowledgement does not count", func(l *lease, now time.Time) {
			l.setVoters(2, three)
			l.acked("x", 2, now)
		}, 2, false},
		{"five voters need two acknowledgements", func(l *lease, now time.Time) {
			l.setVoters(2, five)
			l.acked("b", 2, now)
		}, 2, false},
		{"five voters: the older of the newest two counts", func(l *lease, now time.Time) {
			l.setVoters(2, five)
			l.acked("b", 2, now)
			l.acked("c", 2, now.Add(-span))
			l.acked("d", 2, now.Add(-10*time.Millisecond))
		}, 2, true},
		{"five voters: the second newest is too old", func(l *lease, now time.Time) {
			l.setVoters(2, five)
			l.acked("b", 2, now)
			l.acked("c", 2, now.Add(-span))
		}, 2, false},
		{"a single voter needs nobody", func(l *lease, now time.Time) { l.setVoters(2, []raft.ServerID{}) }, 2, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newManualClock()
			l := newLease(clock, hb, 0.1)
			tc.setup(l, clock.Now())
			if got := l.valid(tc.term); got != tc.want {
				t.Fatalf("valid(%d) = %v, want %v", tc.term, got, tc.want)
			}
		})
	}
}

// leaseCluster is a three-node cluster in read mode whose raft links pass
// through fault transports, its leases on clock (nil: the real one).
func leaseCluster(t *testing.T, mode string, clock LeaseClock, tweaks ...func(*Config)) (*testCluster, map[string]*faultTransport) {
	t.Helper()
	fts := map[string]*faultTransport{}
	c := newTestCluster(t, 3, func(cfg *Config) {
		inner, _, err := newTransport(cfg.RaftAddr, "", nil, cfg.RaftSecret, cfg.Logger)
		if err != nil {
			t.Fatal(err)
		}
		fts[cfg.NodeID] = newFaultTransport(inner)
		cfg.Transport = fts[cfg.NodeID]
		cfg.ReadMode = mode
		cfg.LeaseClock = clock
		for _, tw := range tweaks {
			tw(cfg)
		}
	})
	return c, fts
}

// waitLease waits until the leader may read on its lease.
func waitLease(t *testing.T, n *Node) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := n.leaseIndex(); ok {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s never held a read lease", n.ID())
}

// isHeartbeat tells raft's heartbeats (AppendEntries without entries or
// log position) from replication.
func isHeartbeat(req any) bool {
	ae, ok := req.(*raft.AppendEntriesRequest)
	return ok && len(ae.Entries) == 0 && ae.PrevLogEntry == 0
}

func TestLeaseReadsOnTheLeaderSendNoHeartbeatRound(t *testing.T) {
	const reads = 200
	tests := []struct {
		mode string
		// Heartbeats sent while the reads run. A round needs an answer to
		// a heartbeat of its own, less the one per follower that may be in
		// flight when counting starts; raft's own ticks add a few.
		atLeast, below int64
	}{
		{ReadLinearizable, reads - 2, 1 << 30},
		{ReadLease, 0, reads / 4},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			c, fts := leaseCluster(t, tc.mode, nil)
			l := c.leader()
			if tc.mode == ReadLease {
				waitLease(t, l.node)
			}
			mustApply(t, l.node, activate(1))
			var heartbeats atomic.Int64
			fts[l.cfg.NodeID].setRule(func(_ raft.ServerID, req any) fault {
				if isHeartbeat(req) {
					heartbeats.Add(1)
				}
				return fault{}
			})
			for i := 0; i < reads; i++ {
				if _, found, err := l.node.LinearizableGet(testCtx(t), mailboxName(1)); err != nil || !found {
					t.Fatalf("read %d: found=%v err=%v", i, found, err)
				}
			}
			got := heartbeats.Load()
			t.Logf("%s: %d heartbeats for %d reads", tc.mode, got, reads)
			if got < tc.atLeast || got >= tc.below {
				t.Fatalf("%s: %d heartbeats for %d reads, want in [%d, %d)", tc.mode, got, reads, tc.atLeast, tc.below)
			}
		})
	}
}

func TestExpiredLeaseFallsBackToAHeartbeatRound(t *testing.T) {
	clock := newManualClock()
	c, fts := leaseCluster(t, ReadLease, clock)
	l := c.leader()
	waitLease(t, l.node)
	mustApply(t, l.node, activate(1))
	commit := l.node.raft.CommitIndex()
	waitFor(t, "the followers to apply the write", func() bool {
		for _, f := range c.followers() {
			if applied, _ := f.node.fsm.appliedIndex(); applied < commit {
				return false
			}
		}
		return true
	})
	// No raft message gets through any more: only the lease can answer,
	// and no other node can become leader and answer instead. Once a
	// heartbeat to each follower failed, none sent earlier is in flight
	// (raft counts a late answer for a later VerifyLeader).
	var mu sync.Mutex
	failed := map[raft.ServerID]bool{}
	for _, ft := range fts {
		ft.setRule(func(to raft.ServerID, req any) fault {
			if isHeartbeat(req) {
				mu.Lock()
				failed[to] = true
				mu.Unlock()
			}
			return fault{fail: true}
		})
	}
	waitFor(t, "a failed heartbeat to each follower", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, f := range c.followers() {
			if !failed[raft.ServerID(f.cfg.NodeID)] {
				return false
			}
		}
		return true
	})
	if _, found, err := l.node.LinearizableGet(testCtx(t), mailboxName(1)); err != nil || !found {
		t.Fatalf("read under a valid lease with heartbeats failing: found=%v err=%v", found, err)
	}
	clock.advance(l.node.lease.span)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := l.node.LinearizableGet(ctx, mailboxName(1)); err == nil {
		t.Fatal("read after the lease ended succeeded without any follower confirming leadership")
	}
}

func TestLeadershipTransferRevokesTheLeaseBeforeTimeoutNowIsSent(t *testing.T) {
	clock := newManualClock()
	c, fts := leaseCluster(t, ReadLease, clock)
	l := c.leader()
	waitLease(t, l.node)
	term := l.node.raft.CurrentTerm()
	sending, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fts[l.cfg.NodeID].setRule(func(_ raft.ServerID, req any) fault {
		if _, ok := req.(*raft.TimeoutNowRequest); ok {
			once.Do(func() { close(sending) })
			return fault{hold: release}
		}
		return fault{}
	})
	done := make(chan error, 1)
	go func() { done <- l.node.TransferLeadership(testCtx(t), "") }()
	select {
	case <-sending:
	case err := <-done:
		t.Fatalf("transfer ended before sending TimeoutNow: %v", err)
	}
	if !l.node.IsLeader() || l.node.raft.CurrentTerm() != term {
		t.Fatal("leadership moved while TimeoutNow was held")
	}
	if _, ok := l.node.leaseIndex(); ok {
		t.Fatal("the leader still reads on its lease while a follower may be told to take over")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if l.node.lease.valid(term) {
		t.Fatal("the lease of the term that was handed over is valid again")
	}
}

func TestNewLeaderReadsOnItsLeaseOnlyOnceAnEntryOfItsTermIsApplied(t *testing.T) {
	clock := newManualClock()
	c, fts := leaseCluster(t, ReadLease, clock)
	old, next := c.leader(), c.followers()[0]
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	// The new leader's heartbeats get through; its entries do not.
	fts[next.cfg.NodeID].setRule(func(_ raft.ServerID, req any) fault {
		if ae, ok := req.(*raft.AppendEntriesRequest); ok && len(ae.Entries) > 0 {
			return fault{hold: release}
		}
		return fault{}
	})
	if err := old.node.TransferLeadership(testCtx(t), next.cfg.NodeID); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	waitFor(t, "acknowledged heartbeats of the new leader", func() bool {
		l := next.node.lease
		l.mu.Lock()
		defer l.mu.Unlock()
		return next.node.IsLeader() && l.term == next.node.raft.CurrentTerm() && len(l.acks) > 0
	})
	if _, ok := next.node.leaseIndex(); ok {
		t.Fatal("a new leader reads on its lease before an entry of its term is applied")
	}
	unblock()
	waitLease(t, next.node)
}

func TestLeaderThatSteppedDownHoldsNoLease(t *testing.T) {
	clock := newManualClock()
	c, fts := leaseCluster(t, ReadLease, clock)
	l := c.leader()
	waitLease(t, l.node)
	term := l.node.raft.CurrentTerm()
	fts[l.cfg.NodeID].setRule(func(raft.ServerID, any) fault { return fault{fail: true} })
	deadline := time.Now().Add(10 * time.Second)
	for l.node.IsLeader() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if l.node.IsLeader() {
		t.Fatal("the cut-off leader never stepped down")
	}
	waitFor(t, "the step-down to revoke the lease", func() bool { return !l.node.lease.valid(term) })
}

// readRecord is one read on the cut-off leader.
type readRecord struct {
	start, end time.Time
	loc        string
	err        error
}

// The second case breaks the clock assumption on purpose, as if the
// followers' clocks ran 20 times fast: it proves the test sees a stale
// read when one happens.
func TestCutOffLeaderStopsLeaseReadsAndNeverServesAValueOverwrittenElsewhere(t *testing.T) {
	tests := []struct {
		name               string
		leaderHB, othersHB time.Duration
		wantStale          bool
	}{
		{"every heartbeat timeout as the lease assumes", 300 * time.Millisecond, 300 * time.Millisecond, false},
		{"followers time out 20 times sooner than the lease assumes", time.Second, 50 * time.Millisecond, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, fts := leaseCluster(t, ReadLease, nil, func(cfg *Config) {
				hb := tc.othersHB
				if cfg.NodeID == "n1" {
					hb = tc.leaderHB
				}
				cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = hb, hb, hb
			})
			old := c.nodes[0]
			if c.leader() != old {
				if err := c.leader().node.TransferLeadership(testCtx(t), old.cfg.NodeID); err != nil {
					t.Fatalf("transfer to %s: %v", old.cfg.NodeID, err)
				}
				waitFor(t, old.cfg.NodeID+" to lead", func() bool { return c.stableLeader() == old })
			}
			stale := cutOffLeaderReads(t, c, fts, old)
			if stale != tc.wantStale {
				t.Fatalf("stale read seen: %v, want %v", stale, tc.wantStale)
			}
		})
	}
}

// cutOffLeaderReads cuts old, the leader, off from the others while
// reading one name on it in a loop, has the new leader overwrite the name,
// and reports whether old returned the overwritten value to a read started
// after the new one was acknowledged. It fails the test if old answered no
// read on its lease, or answered one started after its lease ended.
func cutOffLeaderReads(t *testing.T, c *testCluster, fts map[string]*faultTransport, old *testNode) (stale bool) {
	t.Helper()
	const name = "user.lease"
	mustApply(t, old.node, fsm.Command{Op: fsm.OpActivate, Name: name, Location: "be-old!default", ACL: acl(1), Identity: "mupdate-be"})
	waitLease(t, old.node)
	cut := raft.ServerID(old.cfg.NodeID)
	for id, ft := range fts {
		ft.setRule(func(to raft.ServerID, _ any) fault { return fault{fail: id == old.cfg.NodeID || to == cut} })
	}
	cutAt := time.Now()
	var (
		mu    sync.Mutex
		reads []readRecord
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			r := readRecord{start: time.Now()}
			e, _, err := old.node.LinearizableGet(ctx, name)
			cancel()
			r.end, r.loc, r.err = time.Now(), e.Location, err
			mu.Lock()
			reads = append(reads, r)
			mu.Unlock()
		}
	}()
	var next *testNode
	waitFor(t, "a new leader among the others", func() bool {
		for _, tn := range c.nodes {
			if tn != old && tn.node.IsLeader() {
				if ready, _ := tn.node.lead.ready(); ready == tn.node.raft.CurrentTerm() {
					next = tn
					return true
				}
			}
		}
		return false
	})
	mustApply(t, next.node, fsm.Command{Op: fsm.OpActivate, Name: name, Location: "be-new!default", ACL: acl(1), Identity: "mupdate-be"})
	ackedAt := time.Now()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	// Every acknowledgement the lease counts was sent before the cut.
	leaseEnd := cutAt.Add(old.node.lease.span)
	served := 0
	for _, r := range reads {
		if r.err != nil {
			continue
		}
		if r.start.After(cutAt) {
			served++
		}
		if r.start.After(ackedAt) && r.loc != "be-new!default" {
			stale = true
		}
		if r.start.After(leaseEnd) && r.loc == "be-old!default" {
			t.Fatalf("the cut-off node answered a read started %v after its lease ended", r.start.Sub(leaseEnd))
		}
	}
	t.Logf("%d reads on the cut-off leader, %d answered after the cut; the new leader acknowledged its write %v after the cut, the lease ended %v after it",
		len(reads), served, ackedAt.Sub(cutAt), old.node.lease.span)
	if served == 0 {
		t.Fatal("the cut-off leader answered no read on its lease: the test did not exercise it")
	}
	return stale
}

func TestLeaseModeNodeListensForRaftOnlyAHeartbeatTimeoutAfterStart(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	cfg.ReadMode = ReadLease
	start := time.Now()
	opened := make(chan *testNode, 1)
	go func() { opened <- startNode(t, cfg) }()
	for time.Since(start) < cfg.HeartbeatTimeout/2 {
		conn, err := net.DialTimeout("tcp", cfg.RaftAddr, 10*time.Millisecond)
		if err == nil {
			conn.Close()
			if at := time.Since(start); at < cfg.HeartbeatTimeout {
				t.Fatalf("raft accepted a connection %v after the node started, before its %v vote fence ended", at, cfg.HeartbeatTimeout)
			}
		}
		time.Sleep(time.Millisecond)
	}
	<-opened
}
