package reservations_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/reservations"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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

func apply(t *testing.T, n *cluster.Node, cmds ...fsm.Command) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := n.Apply(ctx, cmds)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Code != fsm.CodeOK {
			t.Fatalf("%s %s: %s", cmds[i].Op, cmds[i].Name, r.Code)
		}
	}
}

// TestExpiryReleasesOnlyOldReservationsThroughRaftAndLogsEach runs the
// policy on every node of a real cluster: only the leader acts, an old
// reservation goes (on every node), a fresh one and an active mailbox stay.
func TestExpiryReleasesOnlyOldReservationsThroughRaftAndLogsEach(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	leader := c.Nodes[c.WaitLeader()].Node()
	apply(t, leader,
		fsm.Command{Op: fsm.OpReserve, Name: "user.stuck", Location: "be1!default", Identity: "be1"},
		fsm.Command{Op: fsm.OpActivate, Name: "user.live", Location: "be1!default"})
	time.Sleep(600 * time.Millisecond)
	apply(t, leader, fsm.Command{Op: fsm.OpReserve, Name: "user.fresh", Location: "be2!default", Identity: "be2"})

	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := reservations.Config{TTL: 500 * time.Millisecond, Interval: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			if err := reservations.Run(ctx, n.Node(), directory.NewService(n.Node(), n.Node().Store()), cfg); err != nil {
				t.Error(err)
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, stuck := leader.Store().Get("user.stuck")
		if !stuck {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the old reservation was never released")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if _, ok := leader.Store().Get("user.fresh"); !ok {
		// It may have aged past the TTL by now on a slow machine; the
		// log says which were released.
		if !strings.Contains(logs.String(), "mailbox=user.fresh") {
			t.Fatal("user.fresh vanished without a log line")
		}
	}
	if e, ok := leader.Store().Get("user.live"); !ok || e.State != fsm.StateActive {
		t.Fatalf("active mailbox after expiry: %+v %v", e, ok)
	}
	out := logs.String()
	if n := strings.Count(out, `msg="released expired reservation" mailbox=user.stuck`); n != 1 {
		t.Fatalf("release of user.stuck logged %d times:\n%s", n, out)
	}
	if !strings.Contains(out, "reserved_by=be1") || !strings.Contains(out, "location=be1!default") {
		t.Fatalf("log line lacks who and where:\n%s", out)
	}
	evs, err := leader.Store().EventsSince(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	deleted := false
	for _, ev := range evs {
		deleted = deleted || (ev.Entry.Name == "user.stuck" && ev.Type == fsm.EventDelete)
	}
	if !deleted {
		t.Fatalf("no DELETE event for user.stuck: %+v", evs)
	}
}

// racingNode lets a backend's write land between the expirer's look at
// the reservations and its proposal.
type racingNode struct {
	*cluster.Node
	before func()
}

func (r racingNode) Apply(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	r.before()
	return r.Node.Apply(ctx, cmds)
}

func TestExpiryLosingARaceWithActivateKeepsTheMailbox(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	leader := c.Nodes[c.WaitLeader()].Node()
	apply(t, leader,
		fsm.Command{Op: fsm.OpReserve, Name: "user.racing", Location: "be1!default"},
		fsm.Command{Op: fsm.OpReserve, Name: "user.stuck", Location: "be1!default"})
	n := racingNode{Node: leader, before: func() {
		apply(t, leader, fsm.Command{Op: fsm.OpActivate, Name: "user.racing", Location: "be1!default"})
	}}
	var logs syncBuffer
	cfg := reservations.Config{TTL: time.Minute, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got := reservations.Expire(ctx, directory.NewService(n, leader.Store()), cfg, time.Now().Add(time.Hour)); got != 1 {
		t.Fatalf("released %d, want 1 (user.stuck only)\n%s", got, logs.String())
	}
	if e, ok := leader.Store().Get("user.racing"); !ok || e.State != fsm.StateActive {
		t.Fatalf("user.racing after losing expiry: %+v %v, want ACTIVE", e, ok)
	}
	if _, ok := leader.Store().Get("user.stuck"); ok {
		t.Fatal("user.stuck not released")
	}
	if !strings.Contains(logs.String(), "changed before its release; kept") {
		t.Fatalf("the kept reservation is not logged:\n%s", logs.String())
	}
}
