package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
)

func TestLeaderChangesCountsNewLeadersOnly(t *testing.T) {
	type obs struct {
		id   string
		term uint64
	}
	tests := []struct {
		name string
		seq  []obs
		want uint64
	}{
		{"first leader is not a change", []obs{{"n1", 2}}, 0},
		{"same leader reported again", []obs{{"n1", 2}, {"n1", 2}}, 0},
		{"leader lost and back in the same term", []obs{{"n1", 2}, {"", 2}, {"n1", 2}}, 0},
		{"another node leads", []obs{{"n1", 2}, {"", 3}, {"n2", 3}}, 1},
		{"same node re-elected in a new term", []obs{{"n1", 2}, {"", 3}, {"n1", 3}}, 1},
		{"three elections", []obs{{"n1", 2}, {"n2", 3}, {"n3", 4}, {"n1", 5}}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c leaderChanges
			for _, o := range tt.seq {
				c.observe(o.id, o.term)
			}
			if got := c.count.Load(); got != tt.want {
				t.Fatalf("count = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestLeaderChangesAfterLeaderStops checks the counter a survivor reports
// (Status.LeaderChanges) once its leader has gone and another was elected.
func TestLeaderChangesAfterLeaderStops(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	old := c.leader()
	for _, tn := range c.running() {
		if got := tn.node.Status().LeaderChanges; got != 0 {
			t.Fatalf("%s: %d leader changes before any failure", tn.cfg.NodeID, got)
		}
	}
	old.stop()
	c.waitLeader()
	for _, tn := range c.running() {
		if got := tn.node.LeaderChanges(); got < 1 {
			t.Fatalf("%s: LeaderChanges = %d after the leader stopped, want ≥ 1", tn.cfg.NodeID, got)
		}
	}
}

// TestLeaderRidesOutProcessStall stops the whole test process (all three
// nodes) with SIGSTOP for less than the heartbeat timeout, as an
// overloaded machine or a paused VM does. The followers' heartbeat timers
// do not run out, so leadership must not move either: with a leader lease
// shorter than the stall the leader used to step down on its own clock as
// soon as it ran again (the churn of issue 11). The stall detector must
// have seen the stall.
func TestLeaderRidesOutProcessStall(t *testing.T) {
	const (
		hb    = 1500 * time.Millisecond
		stall = 700 * time.Millisecond
	)
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.HeartbeatTimeout = hb
		cfg.ElectionTimeout = hb
		cfg.LeaderLeaseTimeout = 0 // the default: the heartbeat timeout
	})
	leader := c.leader()
	term := leader.node.Status().Term
	mustApply(t, leader.node, activate(1))

	// A child process stops this one and lets it go on after the stall.
	script := fmt.Sprintf("kill -STOP %d; sleep %.3f; kill -CONT %d", os.Getpid(), stall.Seconds(), os.Getpid())
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("stall the process: %v: %s", err, out)
	}
	// Long enough for any timer the stall pushed past its deadline to fire.
	time.Sleep(2 * hb)

	st := leader.node.Status()
	if st.State != "Leader" || st.Term != term {
		t.Fatalf("after a %v stall: %s is %s in term %d, was Leader in term %d", stall, leader.cfg.NodeID, st.State, st.Term, term)
	}
	for _, tn := range c.running() {
		if got := tn.node.LeaderChanges(); got != 0 {
			t.Fatalf("%s saw %d leader changes across a %v stall", tn.cfg.NodeID, got, stall)
		}
	}
	if st.LongestStall < stall/2 {
		t.Fatalf("stall detector: longest stall %v; want about %v", st.LongestStall, stall)
	}
	mustApply(t, leader.node, activate(2))
}

// TestWriteRetriesAsSoonAsALeaderIsElected makes the retry pause of a
// write that finds no leader a minute long: the write through a survivor
// must still go through once the survivors elect a new leader, because
// the leader change cuts the pause short.
func TestWriteRetriesAsSoonAsALeaderIsElected(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	for _, tn := range c.running() {
		tn.node.retryBase, tn.node.retryMax = time.Minute, time.Minute
	}
	old := c.leader()
	survivor := c.followers()[0]
	old.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := survivor.node.Apply(ctx, []fsm.Command{activate(1)}); err != nil {
		t.Fatalf("write through %s after the leader stopped: %v", survivor.cfg.NodeID, err)
	}
	t.Logf("write accepted %v after the leader stopped", time.Since(start))
}
