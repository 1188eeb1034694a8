package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/fsm"
)

// replica is what the gateway keeps: the directory rebuilt from
// WatchDirectory updates. It checks the promises of the feed as it goes:
// after a reset, events continue at exactly the next revision, with no gap
// and no duplicate.
type replica struct {
	mu      sync.Mutex
	entries map[string]fsm.Entry
	rev     uint64
	events  []fsm.Event // every event delivered, in order
	resets  []uint64    // revisions of the resets delivered
	fault   error
	changed chan struct{}
}

func newReplica() *replica {
	return &replica{entries: map[string]fsm.Entry{}, changed: make(chan struct{}, 1)}
}

func (r *replica) apply(u client.Update) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch u := u.(type) {
	case *client.Reset:
		if u.Revision < r.rev {
			r.fault = fmt.Errorf("reset to revision %d went back from %d", u.Revision, r.rev)
		}
		r.entries = map[string]fsm.Entry{}
		for _, e := range u.Entries {
			r.entries[e.Name] = e
		}
		r.rev = u.Revision
		r.resets = append(r.resets, u.Revision)
	case *client.Events:
		for _, ev := range u.Events {
			if ev.Revision != r.rev+1 && r.fault == nil {
				r.fault = fmt.Errorf("event at revision %d after %d: gap or duplicate", ev.Revision, r.rev)
			}
			if ev.Type == fsm.EventDelete {
				delete(r.entries, ev.Entry.Name)
			} else {
				r.entries[ev.Entry.Name] = ev.Entry
			}
			r.rev = ev.Revision
			r.events = append(r.events, ev)
		}
		r.rev = max(r.rev, u.Revision)
	}
	select {
	case r.changed <- struct{}{}:
	default:
	}
	return nil
}

func (r *replica) resetList() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.resets...)
}

// waitRev waits until the replica has caught up with rev.
func (r *replica) waitRev(t *testing.T, rev uint64) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		got, fault := r.rev, r.fault
		r.mu.Unlock()
		if fault != nil {
			t.Fatal(fault)
		}
		if got >= rev {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("replica at revision %d, want %d", got, rev)
		}
	}
}

// matchesLeader checks the replica against the leader's own state.
func (r *replica) matchesLeader(t *testing.T, c *apitest.Cluster) {
	t.Helper()
	view := c.Nodes[c.WaitLeader()].Node().Store().View()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rev != view.Revision() {
		t.Fatalf("replica at %d, leader at %d", r.rev, view.Revision())
	}
	n := 0
	view.ScanName("", func(e fsm.Entry) bool {
		n++
		if got, ok := r.entries[e.Name]; !ok || got != e {
			t.Errorf("replica entry %q = %+v, leader has %+v", e.Name, got, e)
		}
		return true
	})
	if n != len(r.entries) {
		t.Fatalf("replica has %d entries, leader %d", len(r.entries), n)
	}
}

// eventsSince returns the replica's events after rev.
func (r *replica) eventsSince(rev uint64) []fsm.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []fsm.Event
	for _, ev := range r.events {
		if ev.Revision > rev {
			out = append(out, ev)
		}
	}
	return out
}

// watch runs WatchDirectory into a replica until the test ends.
func watch(t *testing.T, cl *client.Client, opts client.WatchOptions) *replica {
	r := newReplica()
	r.rev = opts.FromRevision // the caller's state is at this revision
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.WatchDirectory(ctx, opts, r.apply) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("WatchDirectory ended with %v, want context.Canceled", err)
		}
	})
	return r
}

func TestWatchDirectoryFromZeroDeliversResetThenEveryChange(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	cl := newClient(t, c.Endpoints())
	activateN(t, cl, 0, 10)
	r := watch(t, cl, client.WatchOptions{})
	r.waitRev(t, 10)
	resets := r.resetList()
	if len(resets) != 1 {
		t.Fatalf("resets %v, want exactly one initial reset", resets)
	}
	last := mixedWrites(t, cl, 10, 30)
	r.waitRev(t, last)
	sameEvents(t, r.eventsSince(resets[0]), leaderLog(t, c, resets[0]))
	r.matchesLeader(t, c)
}

func TestWatchDirectoryFromMiddleRevisionResumesWithoutReset(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	cl := newClient(t, c.Endpoints())
	activateN(t, cl, 0, 15)
	r := watch(t, cl, client.WatchOptions{FromRevision: 7})
	last := mixedWrites(t, cl, 15, 25)
	r.waitRev(t, last)
	if resets := r.resetList(); len(resets) != 0 {
		t.Fatalf("resets %v, want none", resets)
	}
	sameEvents(t, r.eventsSince(0), leaderLog(t, c, 7))
}

func TestWatchDirectoryRecoversFromCompactionByRelisting(t *testing.T) {
	c := apitest.Start(t, apitest.Options{Cluster: func(_ int, cfg *cluster.Config) { cfg.FSM.HistorySize = 8 }})
	cl := newClient(t, c.Endpoints())
	before := activateN(t, cl, 0, 30)
	// The caller's state is at revision 2: long gone from every node.
	r := watch(t, cl, client.WatchOptions{FromRevision: 2})
	r.waitRev(t, before)
	resets := r.resetList()
	if len(resets) != 1 || resets[0] < before {
		t.Fatalf("resets %v, want one re-list at or after revision %d", resets, before)
	}
	last := activateN(t, cl, 30, 35) // fewer events than the history keeps
	r.waitRev(t, last)
	sameEvents(t, r.eventsSince(resets[0]), leaderLog(t, c, resets[0]))
	r.matchesLeader(t, c)
}

func TestWatchDirectoryFollowsAcrossLeaderChanges(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	cl := newClient(t, c.Endpoints())
	activateN(t, cl, 0, 5)
	r := watch(t, cl, client.WatchOptions{})
	w := startWriter(t, newClient(t, c.Endpoints()), 1000)
	for i := 0; i < 2; i++ {
		w.waitWrites(t, 20)
		l := c.WaitLeader()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := c.Nodes[l].Node().TransferLeadership(ctx, ""); err != nil {
			t.Fatalf("transfer leadership: %v", err)
		}
		cancel()
		if c.WaitLeader() == l {
			t.Fatalf("leadership stayed on %s", c.Nodes[l].ID)
		}
	}
	w.waitWrites(t, 20)
	w.stop(t)
	r.waitRev(t, c.Revision(t))
	resets := r.resetList()
	if len(resets) != 1 {
		t.Fatalf("resets %v, want only the initial one across leader changes", resets)
	}
	sameEvents(t, r.eventsSince(resets[0]), leaderLog(t, c, resets[0]))
	r.matchesLeader(t, c)
}

func TestWatchDirectoryResumesAcrossRestartOfTheServingNode(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	serving := c.Follower()
	// The serving node is listed first, so the watch starts there.
	eps := []string{c.Nodes[serving].APIAddr}
	for i, n := range c.Nodes {
		if i != serving {
			eps = append(eps, n.APIAddr)
		}
	}
	cl := newClient(t, eps)
	activateN(t, cl, 0, 5)
	r := watch(t, cl, client.WatchOptions{})
	w := startWriter(t, newClient(t, c.Endpoints()), 2000)
	w.waitWrites(t, 20)
	c.Stop(serving)
	w.waitWrites(t, 40)
	// The watch goes on from another node while its node is down.
	r.waitRev(t, c.Revision(t))
	c.Restart(serving)
	w.waitWrites(t, 40)
	w.stop(t)
	r.waitRev(t, c.Revision(t))
	resets := r.resetList()
	if len(resets) != 1 {
		t.Fatalf("resets %v, want only the initial one across a restart", resets)
	}
	sameEvents(t, r.eventsSince(resets[0]), leaderLog(t, c, resets[0]))
	r.matchesLeader(t, c)
}

// writer writes continuously through the client until stopped, the way
// backends keep writing while the cluster changes under them.
type writer struct {
	stopping atomic.Bool
	done     chan struct{}
	count    atomic.Int64
	err      error
}

func startWriter(t *testing.T, cl *client.Client, base int) *writer {
	w := &writer{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := base; !w.stopping.Load(); i++ {
			// Each write runs to completion: a write cut short could still
			// commit after the test has read the final revision.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			_, err := cl.Activate(ctx, mailboxName(i), location(i), acl(i))
			cancel()
			if err != nil {
				w.err = fmt.Errorf("write %d: %w", i, err)
				return
			}
			w.count.Add(1)
		}
	}()
	t.Cleanup(func() { w.stopping.Store(true); <-w.done })
	return w
}

func (w *writer) waitWrites(t *testing.T, n int64) {
	t.Helper()
	target := w.count.Load() + n
	deadline := time.Now().Add(30 * time.Second)
	for w.count.Load() < target {
		select {
		case <-w.done:
			t.Fatalf("writer stopped: %v", w.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("writer made %d writes, want %d", w.count.Load(), target)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop ends the writer after its current write.
func (w *writer) stop(t *testing.T) {
	t.Helper()
	w.stopping.Store(true)
	<-w.done
	if w.err != nil {
		t.Fatal(w.err)
	}
}
