package cluster

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// TestWritersInFlightShareTheNextEntry holds the leader's first entry
// uncommitted (both followers are stopped) while 16 writers arrive: with
// one entry in flight at a time (MaxProposalsInFlight 1), the other 15
// writes must wait for it and go out together as the next entry, instead
// of each becoming an entry, an fsync and a replication round of its own.
func TestWritersInFlightShareTheNextEntry(t *testing.T) {
	const writers = 16
	c := newTestCluster(t, 3, func(cfg *Config) {
		// The leader must keep leading without its followers while the
		// writes queue; the first election (1–2× the heartbeat timeout)
		// must still come within waitLeader's 15 s.
		cfg.HeartbeatTimeout = 5 * time.Second
		cfg.ElectionTimeout = 5 * time.Second
		cfg.LeaderLeaseTimeout = 5 * time.Second
		cfg.MaxProposalsInFlight = 1
	})
	leader := c.leader().node
	for _, f := range c.followers() {
		f.stop()
	}
	p := leader.proposer
	entries0 := p.entries.Load()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	write := func(i int) {
		defer wg.Done()
		_, _ = leader.Apply(ctx, []fsm.Command{activate(i)})
	}
	wg.Add(1)
	go write(0)
	waitFor(t, "the first entry to be proposed", func() bool { return p.entries.Load() == entries0+1 })
	for i := 1; i < writers; i++ {
		wg.Add(1)
		go write(i)
	}
	// The proposer holds the next write while it waits for a slot; the
	// other 14 queue behind it.
	waitFor(t, "15 writes to wait behind the entry in flight", func() bool { return len(p.ch) == writers-2 })
	if got := p.entries.Load() - entries0; got != 1 {
		t.Fatalf("%d entries proposed while the first is uncommitted, want 1", got)
	}
}

// TestWritersAnsweredTogetherShareTheirNextEntry answers eight writers
// with one entry and has them send their next write 40 ms apart, as slow
// clients would: with the hold, the first one back waits for the other
// seven and the eight writes share one entry; without it (and, with the
// same timing, for any hold shorter than the stagger) each leaves alone.
func TestWritersAnsweredTogetherShareTheirNextEntry(t *testing.T) {
	tests := []struct {
		name        string
		hold        time.Duration
		wantEntries func(uint64) bool
	}{
		{"hold", 10 * time.Second, func(n uint64) bool { return n == 1 }},
		{"no hold", -1, func(n uint64) bool { return n > 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := entriesForNextWrites(t, tt.hold, 8, 40*time.Millisecond)
			if !tt.wantEntries(got) {
				t.Fatalf("hold %v: the writers' next writes took %d entries", tt.hold, got)
			}
		})
	}
}

// entriesForNextWrites makes the leader propose one entry holding the
// first write of each of n writers (their writes queue while a first
// entry cannot replicate), then each writer sends a second write i×stagger
// after its answer; it returns how many entries those second writes took.
func entriesForNextWrites(t *testing.T, hold time.Duration, n int, stagger time.Duration) uint64 {
	var fts []*faultTransport
	c := newTestCluster(t, 3, func(cfg *Config) {
		inner, _, err := newTransport(cfg.RaftAddr, "", nil, cfg.RaftSecret, cfg.Logger)
		if err != nil {
			t.Fatal(err)
		}
		fts = append(fts, newFaultTransport(inner))
		cfg.Transport = fts[len(fts)-1]
		cfg.MaxProposalsInFlight = 1
		cfg.GroupCommitHold = hold
	})
	leader := c.leader().node
	p := leader.proposer
	release := make(chan struct{})
	for _, ft := range fts {
		ft.setRule(func(_ raft.ServerID, req any) fault {
			if ae, ok := req.(*raft.AppendEntriesRequest); ok && len(ae.Entries) > 0 {
				return fault{hold: release}
			}
			return fault{}
		})
	}
	entries0 := p.entries.Load()
	var wg sync.WaitGroup
	write := func(i int) {
		if _, err := leader.Apply(testCtx(t), []fsm.Command{activate(i)}); err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		write(0)
	}()
	waitFor(t, "the first entry to be proposed", func() bool { return p.entries.Load() == entries0+1 })
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			write(i)
			time.Sleep(time.Duration(i) * stagger)
			write(100 + i)
		}()
	}
	waitFor(t, "the writes to queue behind the entry in flight", func() bool { return len(p.ch) == n-1 })
	for _, ft := range fts {
		ft.setRule(nil)
	}
	close(release)
	wg.Wait()
	// One entry for writer 0, one for the first writes of the others.
	return p.entries.Load() - entries0 - 2
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
