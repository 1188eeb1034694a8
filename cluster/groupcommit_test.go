package cluster

import (
	"context"
	"sync"
	"testing"
	"time"

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
		// writes queue.
		cfg.HeartbeatTimeout = 10 * time.Second
		cfg.ElectionTimeout = 10 * time.Second
		cfg.LeaderLeaseTimeout = 10 * time.Second
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
