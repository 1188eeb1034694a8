package jepsen

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/internal/testcluster"
)

func TestClockNemesisSetsRatesWithinItsDriftAndResetsThem(t *testing.T) {
	c := &Cluster{}
	for _, id := range []string{"n1", "n2", "n3"} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, leaseClockRateFile), []byte("1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, &Node{Spec: testcluster.Spec{ID: id, DataDir: dir}})
	}
	if err := checkClockNemesis(c); err != nil {
		t.Fatalf("check with every rate file present: %v", err)
	}
	rate := func(n *Node) float64 {
		b, err := os.ReadFile(filepath.Join(n.DataDir, leaseClockRateFile))
		if err != nil {
			t.Fatal(err)
		}
		r, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	const drift = 0.2
	h := NewHistory()
	n := &clockNemesis{c: c, h: h, rng: rand.New(rand.NewPCG(1, 2)), log: slog.New(slog.DiscardHandler), drift: drift, every: 2 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.run(ctx) }()
	changed := false
	for i := 0; i < 200; i++ {
		for _, node := range c.Nodes {
			r := rate(node)
			if r < 1-drift-1e-9 || r > 1+drift+1e-9 {
				t.Fatalf("%s runs at %v, outside [%v, %v]", node.ID, r, 1-drift, 1+drift)
			}
			changed = changed || r != 1
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if !changed {
		t.Fatal("no rate ever changed")
	}
	for _, node := range c.Nodes {
		if r := rate(node); r != 1 {
			t.Errorf("%s left at rate %v after the run", node.ID, r)
		}
	}
	faults := h.Faults()
	if len(faults) == 0 || faults[0].Nemesis != NemesisClock || !strings.Contains(faults[0].Desc, "n1=") {
		t.Fatalf("faults recorded: %+v", faults)
	}
	os.Remove(filepath.Join(c.Nodes[1].DataDir, leaseClockRateFile))
	if err := checkClockNemesis(c); err == nil || !strings.Contains(err.Error(), "-tags clocknemesis") {
		t.Fatalf("check with a binary that reads no rate file: %v", err)
	}
}
