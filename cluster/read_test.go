package cluster

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

func TestLinearizableReadOnFollowerSeesWriteAckedByLeader(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	fs := c.followers()
	for i := 0; i < 50; i++ {
		// Acknowledged by the leader: applied there, maybe not yet on the
		// followers, which learn the commit index only later.
		mustApply(t, l.node, activate(i))
		f := fs[i%2]
		if err := f.node.LinearizableRead(testCtx(t)); err != nil {
			t.Fatalf("read %d on %s: %v", i, f.cfg.NodeID, err)
		}
		if _, ok := f.node.Store().Get(mailboxName(i)); !ok {
			t.Fatalf("linearizable read on %s missed %s acknowledged before it", f.cfg.NodeID, mailboxName(i))
		}
	}
}

// LinearizableGet through any node sees a write acknowledged just before
// it, also when the write was only applied by the leader (ApplyCommitted
// through a follower, as MUPDATE does) and the reading follower has not
// learned its commit yet; a name never written is reported missing.
func TestLinearizableGetSeesWriteJustCommittedThroughAnyNode(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	nodes := append([]*testNode{c.leader()}, c.followers()...)
	for i := 0; i < 60; i++ {
		w, r := nodes[i%3], nodes[(i/3)%3]
		if _, err := w.node.ApplyCommitted(testCtx(t), []fsm.Command{activate(i)}); err != nil {
			t.Fatalf("write %d through %s: %v", i, w.cfg.NodeID, err)
		}
		e, found, err := r.node.LinearizableGet(testCtx(t), mailboxName(i))
		if err != nil || !found || e.Location != location(i) || e.State != fsm.StateActive {
			t.Fatalf("get %s on %s after writing through %s: %+v found=%v err=%v", mailboxName(i), r.cfg.NodeID, w.cfg.NodeID, e, found, err)
		}
	}
	for _, n := range nodes {
		if _, found, err := n.node.LinearizableGet(testCtx(t), "user.never"); err != nil || found {
			t.Fatalf("get of a missing name on %s: found=%v err=%v", n.cfg.NodeID, found, err)
		}
	}
}

func TestConcurrentLinearizableReadsAllSeePriorWrites(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	f := c.followers()[0]
	mustApply(t, l.node, activate(7))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			n := f.node
			if i%2 == 0 {
				n = l.node
			}
			if err := n.LinearizableRead(testCtx(t)); err != nil {
				errs <- err
				return
			}
			if _, ok := n.Store().Get(mailboxName(7)); !ok {
				errs <- fmt.Errorf("reader %d on %s missed the write", i, n.ID())
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestReadBatcherCoalescesCallersIntoRoundsStartedAfterThem(t *testing.T) {
	var (
		rounds  atomic.Int64
		counter atomic.Uint64 // stands in for the commit index
	)
	b := newReadBatcher(func(ctx context.Context) (uint64, error) {
		rounds.Add(1)
		idx := counter.Load() // recorded when the round starts
		time.Sleep(5 * time.Millisecond)
		return idx, nil
	}, func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), time.Second)
	})

	const callers = 200
	var wg sync.WaitGroup
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			before := counter.Add(1) // a "write" acknowledged before the call
			idx, err := b.do(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			if idx < before {
				t.Errorf("round index %d does not cover a write (%d) made before the call", idx, before)
			}
		}()
	}
	wg.Wait()
	if r := rounds.Load(); r >= callers/2 {
		t.Fatalf("%d rounds for %d concurrent callers: not coalescing", r, callers)
	}
	t.Logf("%d callers served by %d rounds", callers, rounds.Load())
}

func TestReadBatcherCallerGivingUpDoesNotFailOthers(t *testing.T) {
	release := make(chan struct{})
	b := newReadBatcher(func(ctx context.Context) (uint64, error) {
		select {
		case <-release:
			return 42, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}, func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 5*time.Second)
	})

	short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := b.do(short)
		done <- err
	}()
	time.Sleep(2 * time.Millisecond)
	patient := make(chan uint64, 1)
	go func() {
		idx, _ := b.do(context.Background())
		patient <- idx
	}()
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("short caller: %v", err)
	}
	close(release)
	if idx := <-patient; idx != 42 {
		t.Fatalf("patient caller got %d, want 42", idx)
	}
}

func TestWaitRevisionReturnsOnceTheStoreReachesIt(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	f := c.followers()[0]
	res := mustApply(t, c.leader().node, activate(1))
	if err := f.node.WaitRevision(testCtx(t), res[0].Revision); err != nil {
		t.Fatal(err)
	}
	if f.node.Store().Revision() < res[0].Revision {
		t.Fatal("WaitRevision returned early")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := f.node.WaitRevision(ctx, res[0].Revision+1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting for a future revision: %v", err)
	}
}

// TestLinearizableGetOnBehindFollowerIsAnsweredByLeader holds every append
// carrying entries to one follower, writes through the leader and reads
// the name through that follower: the answer has the write while the
// follower's store does not, so the leader answered (Peer.Lookup). A
// follower waiting to apply the read index itself would time out.
func TestLinearizableGetOnBehindFollowerIsAnsweredByLeader(t *testing.T) {
	var fts []*faultTransport
	c := newTestCluster(t, 3, func(cfg *Config) {
		inner, _, err := newTransport(cfg.RaftAddr, "", nil, cfg.RaftSecret, cfg.Logger)
		if err != nil {
			t.Fatal(err)
		}
		fts = append(fts, newFaultTransport(inner))
		cfg.Transport = fts[len(fts)-1]
		cfg.WriteTimeout = 3 * time.Second
	})
	leader, behind := c.leader(), c.followers()[0]
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	for _, ft := range fts {
		ft.setRule(func(to raft.ServerID, req any) fault {
			if ae, ok := req.(*raft.AppendEntriesRequest); ok && to == raft.ServerID(behind.cfg.NodeID) && len(ae.Entries) > 0 {
				return fault{hold: release}
			}
			return fault{}
		})
	}
	const name, loc = "user.behind", "imap-be01!default"
	mustApply(t, leader.node, reserve(name, loc))
	e, found, err := behind.node.LinearizableGet(testCtx(t), name)
	if err != nil || !found || e.Location != loc {
		t.Fatalf("get on %s: %+v found=%v err=%v", behind.cfg.NodeID, e, found, err)
	}
	if _, ok := behind.node.Store().Get(name); ok {
		t.Fatalf("%s applied the write: it was not kept behind", behind.cfg.NodeID)
	}
}

// TestALeaderReadIsConfirmedOnlyByHeartbeatsItSent: while the leader's
// heartbeats are dropped, a read on it is refused although writes keep
// being replicated and acknowledged (their answers, some given from early
// acknowledgements of requests sent before the read, would confirm it
// under raft's VerifyLeader); once heartbeats flow, reads succeed.
func TestALeaderReadIsConfirmedOnlyByHeartbeatsItSent(t *testing.T) {
	c, fts := leaseCluster(t, ReadLinearizable, nil)
	leader := c.stableLeader()
	mustApply(t, leader.node, activate(0))
	fts[leader.cfg.NodeID].setRule(func(_ raft.ServerID, req any) fault {
		return fault{fail: isHeartbeat(req)}
	})
	stop := make(chan struct{})
	var writes sync.WaitGroup
	writes.Add(1)
	go func() {
		defer writes.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			mustApply(t, leader.node, activate(i))
		}
	}()
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	err := leader.node.LinearizableRead(ctx)
	cancel()
	close(stop)
	writes.Wait()
	if err == nil {
		t.Fatal("a leader read succeeded while every heartbeat it could send was dropped")
	}
	if leader.node.raft.State() != raft.Leader {
		t.Fatalf("the leader stepped down while writes flowed: the test proves nothing")
	}
	fts[leader.cfg.NodeID].setRule(nil)
	if err := leader.node.LinearizableRead(testCtx(t)); err != nil {
		t.Fatalf("read once heartbeats flow again: %v", err)
	}
}

// A voter removed from the configuration loses its heartbeat goroutine at
// the leader's next read; the remaining voter keeps its own.
func TestALeaderReadStopsHeartbeatsToARemovedVoter(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.stableLeader()
	if err := leader.node.LinearizableRead(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if n := beatGoroutines(); n != 2 {
		t.Fatalf("%d heartbeat goroutines after a read with two peers, want 2", n)
	}
	gone := c.followers()[1]
	if err := leader.node.RemoveServer(testCtx(t), gone.cfg.NodeID); err != nil {
		t.Fatal(err)
	}
	if err := leader.node.LinearizableRead(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	leader.node.confirms.mu.Lock()
	_, kept := leader.node.confirms.peers[raft.ServerID(gone.cfg.NodeID)]
	leader.node.confirms.mu.Unlock()
	if kept {
		t.Fatalf("the leader still keeps heartbeat state for removed %s", gone.cfg.NodeID)
	}
	waitFor(t, "one heartbeat goroutine after the removal", func() bool { return beatGoroutines() == 1 })
}

// beatGoroutines counts the confirmer heartbeat goroutines in the process.
func beatGoroutines() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "(*confirmer).beat(")
}
