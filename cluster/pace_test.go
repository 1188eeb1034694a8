package cluster

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// paceSends counts, per follower, the AppendEntries with entries a
// leader's transport sends.
type paceSends struct {
	mu sync.Mutex
	n  map[raft.ServerID]int
}

func (s *paceSends) rule(fail raft.ServerID) func(raft.ServerID, any) fault {
	return func(to raft.ServerID, req any) fault {
		ae, ok := req.(*raft.AppendEntriesRequest)
		if !ok || len(ae.Entries) == 0 {
			return fault{}
		}
		s.mu.Lock()
		s.n[to]++
		s.mu.Unlock()
		return fault{fail: to == fail}
	}
}

func (s *paceSends) get(id raft.ServerID) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[id]
}

func pacedCluster(t *testing.T, hold time.Duration, persistFirst bool) (*testCluster, *testNode, *faultTransport) {
	t.Helper()
	c, fts := leaseCluster(t, ReadLinearizable, nil, func(cfg *Config) {
		cfg.PersistBeforeReplicate = persistFirst
		cfg.FollowerHold = hold
	})
	l := c.stableLeader()
	mustApply(t, l.node, activate(0))
	return c, l, fts[l.cfg.NodeID]
}

// With a hold, one follower gets every new entry at once (in raft's
// request, or in an early batch) and the other several entries per
// request; without, each gets one request per entry. Both end up with
// every entry.
func TestAFollowerTheCommitDoesNotNeedStoresEntriesInBatches(t *testing.T) {
	const writes = 30
	for _, tc := range []struct {
		name         string
		hold         time.Duration
		persistFirst bool
		batched      bool
	}{
		{"held, raft's order", 100 * time.Millisecond, true, true},
		{"held, early append", 100 * time.Millisecond, false, true},
		{"raft's pace", 0, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, l, ft := pacedCluster(t, tc.hold, tc.persistFirst)
			sends := &paceSends{n: map[raft.ServerID]int{}}
			ft.setRule(sends.rule(""))
			for i := 1; i <= writes; i++ {
				mustApply(t, l.node, activate(i))
			}
			fs := c.followers()
			a, b := sends.get(raft.ServerID(fs[0].cfg.NodeID)), sends.get(raft.ServerID(fs[1].cfg.NodeID))
			// The preferred follower gets nearly every write on its own
			// (on a loaded host raft may still merge two); a held one
			// gets them in batches.
			most, fewest := max(a, b), min(a, b)
			if most < writes*2/3 || tc.batched != (fewest <= writes/3) {
				t.Fatalf("requests with entries for %d writes: %d and %d (hold %v)", writes, a, b, tc.hold)
			}
			for _, f := range fs {
				mustApplyWithin(t, f, l.node.raft.LastIndex())
				if _, ok := f.node.Store().Get(mailboxName(writes)); !ok {
					t.Fatalf("%s lacks the last write", f.cfg.NodeID)
				}
			}
		})
	}
}

// When the follower a commit relies on stops answering, the held one takes
// its place: the first writes wait about one hold, the ones after none.
func TestWritesCommitThroughTheHeldFollowerWhenThePreferredOneFails(t *testing.T) {
	for _, persistFirst := range []bool{true, false} {
		t.Run(map[bool]string{true: "raft's order", false: "early append"}[persistFirst], func(t *testing.T) {
			heldFollowerTakesOver(t, persistFirst)
		})
	}
}

func heldFollowerTakesOver(t *testing.T, persistFirst bool) {
	const hold = 100 * time.Millisecond
	c, l, ft := pacedCluster(t, hold, persistFirst)
	sends := &paceSends{n: map[raft.ServerID]int{}}
	ft.setRule(sends.rule(""))
	for i := 1; i <= 5; i++ {
		mustApply(t, l.node, activate(i))
	}
	fs := c.followers()
	preferred := raft.ServerID(fs[0].cfg.NodeID)
	if sends.get(raft.ServerID(fs[1].cfg.NodeID)) > sends.get(preferred) {
		preferred = raft.ServerID(fs[1].cfg.NodeID)
	}
	ft.setRule(sends.rule(preferred))
	start := time.Now()
	for i := 6; i <= 15; i++ {
		ctx, cancel := context.WithTimeout(testCtx(t), 10*hold)
		_, err := l.node.Apply(ctx, []fsm.Command{activate(i)})
		cancel()
		if err != nil {
			t.Fatalf("write %d with %s failing: %v", i, preferred, err)
		}
	}
	if d := time.Since(start); d > 3*hold {
		t.Fatalf("10 writes took %v with %s failing, hold %v: the held follower did not take its place", d, preferred, hold)
	}
}
