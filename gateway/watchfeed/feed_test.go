package watchfeed

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/gateway"
	"github.com/rookery/rookery/internal/freeport"
)

// TestFeedTracksARealClusterThroughOutageAndRestart runs a real one-node
// Rookery cluster (raft, bolt on disk, gRPC on 127.0.0.1), follows it
// into a replica, and checks creates, moves and deletes arrive, that the
// replica goes not-ready while the cluster is down and catches up after.
func TestFeedTracksARealClusterThroughOutageAndRestart(t *testing.T) {
	cl := apitest.Start(t, apitest.Options{Nodes: 1})
	cl.WaitLeader()
	ccfg := client.DefaultConfig()
	ccfg.WatchProgressInterval = 100 * time.Millisecond
	ccfg.WatchStallTimeout = time.Second
	ccfg.Logger = apitest.Logger(t)
	c, err := client.Dial(cl.Endpoints(), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	must := func(_ uint64, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Activate(ctx, "user.alice", "be1!default", "alice\tlrswipkxtecda\t"))

	rep := gateway.NewReplica(gateway.DefaultReplicaConfig())
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- Run(fctx, c, rep, Config{StaleAfter: 700 * time.Millisecond, Logger: apitest.Logger(t)})
	}()
	waitFor(t, "snapshot", func() bool { return rep.Ready() })
	wantEntry(t, rep, "user.alice", "be1!default", fsm.StateActive)

	must(c.Reserve(ctx, "user.bob", "be2!default"))
	waitFor(t, "reserve", func() bool { return hasEntry(rep, "user.bob", "be2!default", fsm.StateReserved) })
	must(c.Activate(ctx, "user.bob", "be2!default", ""))
	must(c.Deactivate(ctx, "user.alice", "be2!"))
	rev, err := c.Activate(ctx, "user.alice", "be2!", "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "move", func() bool { return hasEntry(rep, "user.alice", "be2!", fsm.StateActive) && rep.Revision() >= rev })
	wantEntry(t, rep, "user.bob", "be2!default", fsm.StateActive)
	if st := rep.Stats(); st.LagRevisions != 0 || st.Revision != rev {
		t.Fatalf("stats after catching up: %+v (last write %d)", st, rev)
	}

	cl.Stop(0)
	waitFor(t, "not ready while the cluster is down", func() bool { return !rep.Ready() })
	if _, ok := rep.Lookup("user.alice"); !ok {
		t.Fatal("known entries must keep routing while the cluster is down")
	}
	cl.Restart(0)
	cl.WaitLeader()
	must(c.Delete(ctx, "user.bob"))
	waitFor(t, "ready and caught up after restart", func() bool {
		_, ok := rep.Lookup("user.bob")
		return rep.Ready() && !ok
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func hasEntry(rep *gateway.Replica, name, loc string, st fsm.State) bool {
	e, ok := rep.Lookup(name)
	return ok && e.Location == loc && e.State == st
}

func wantEntry(t *testing.T, rep *gateway.Replica, name, loc string, st fsm.State) {
	t.Helper()
	if e, ok := rep.Lookup(name); !ok || e.Location != loc || e.State != st {
		t.Fatalf("%s = %+v %v, want %s %s", name, e, ok, loc, st)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within 20s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWarnsWhileEveryEndpointIsUnreachable: with no directory node
// answering, the feed says so in the log, and keeps saying so, instead of
// only turning /readyz to 503.
func TestWarnsWhileEveryEndpointIsUnreachable(t *testing.T) {
	ccfg := client.DefaultConfig()
	ccfg.Logger = apitest.Logger(t)
	c, err := client.Dial([]string{freeport.Addr(t)}, ccfg) // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	rep := gateway.NewReplica(gateway.DefaultReplicaConfig())
	go func() {
		done <- Run(ctx, c, rep, Config{StaleAfter: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	}()
	waitFor(t, "two unreachable warnings", func() bool {
		return strings.Count(logs.String(), "directory unreachable") >= 2
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || rep.Ready() {
		t.Fatalf("want warnings and a replica that is not ready:\n%s", logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
