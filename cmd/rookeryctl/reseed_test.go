package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/fsm"
)

func TestReseedReplacesADivergedMembersData(t *testing.T) {
	bin := buildCtl(t)
	c := apitest.Start(t, apitest.Options{Cluster: func(_ int, cfg *cluster.Config) { cfg.ConsistencyCheckInterval = -1 }})
	eps := "--endpoints=" + strings.Join(c.Endpoints(), ",")
	run := func(args ...string) result { return ctl(t, bin, append([]string{eps}, args...)...) }
	for _, name := range []string{"user.a", "user.b", "user.c"} {
		run("activate", name, "be1!default", "a=lrs").expect(t, "activate", exitOK)
	}

	// n3 picks up an entry no other member has, as after a forged raft
	// append; the next write moves everyone past that revision.
	bad := 2
	if c.WaitLeader() == bad {
		run("member", "transfer-leader").expect(t, "transfer", exitOK)
	}
	store := c.Nodes[bad].Node().Store()
	store.Apply(store.AppliedIndex(), []fsm.Command{{Op: fsm.OpActivate, Name: "user.injected", Location: "evil!default"}})
	run("activate", "user.d", "be1!default", "a=lrs").expect(t, "activate", exitOK)

	run("check", "consistency").expect(t, "check", exitFailed, "n3", "diverged", "INCONSISTENT")
	run("status").expect(t, "status of a diverged cluster", exitFailed, "Diverged (Follower)", "n3: diverged: directory hash", "reads refused")

	// The re-seed removes n3, waits for the operator to wipe and restart
	// it, adds it back and checks.
	cmd := exec.Command(bin, eps, "--timeout=10s", "member", "reseed", "n3", "--wait=60s", "--poll=100ms")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	leader := c.Nodes[c.WaitLeader()].Node()
	deadline := time.Now().Add(30 * time.Second)
	for isMember(t, leader, "n3") {
		if time.Now().After(deadline) {
			t.Fatalf("n3 never removed; output:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Wipe(bad) // what the operator does on n3's host
	c.Restart(bad)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reseed: %v\n%s", err, out.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("reseed hung:\n%s", out.String())
	}
	for _, want := range []string{"step 1/4: removed n3", "mv ", "-raft.peers= -raft.join= -raft.bootstrap=false", "step 3/4", "step 4/4", "consistent: all 3 members", "n3 re-seeded"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("reseed output lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("rookeryctl member reseed n3:\n%s", out.String())
	// n3 serves reads again, from the others' data.
	n3 := c.Nodes[bad].Node()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, found, err := n3.LinearizableGet(ctx, "user.injected"); err != nil || found {
		t.Fatalf("user.injected on the re-seeded n3: found=%v err=%v", found, err)
	}
	if _, found, err := n3.LinearizableGet(ctx, "user.d"); err != nil || !found {
		t.Fatalf("user.d on the re-seeded n3: found=%v err=%v", found, err)
	}
	run("status").expect(t, "status after the re-seed", exitOK, "n3")
}

func isMember(t *testing.T, n *cluster.Node, id string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ms, err := n.Members(ctx)
	if err != nil {
		return true
	}
	for _, m := range ms {
		if m.ID == id {
			return true
		}
	}
	return false
}
