package jepsen

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// NemesisClock names the clock nemesis's faults in histories and summaries.
const NemesisClock = "clock"

// leaseClockRateFile is the file in a node's data dir that sets the rate
// of its lease clock; only rookeryd built with -tags clocknemesis reads it
// (cmd/rookeryd/leaseclock_nemesis.go), and such a build creates it.
const leaseClockRateFile = "lease-clock-rate"

// clockNemesis makes the nodes' lease clocks run at other rates than real
// time, for the whole run, beside the main nemesis: the lease is only at
// risk when a leader loses its followers (a partition, a pause) while its
// clock runs slow. Every [every, 2·every) it draws a new rate for every
// node, the slowest allowed (1−drift) half the time, else uniform in
// [1−drift, 1+drift]. Go's lease uses the monotonic clock, which setting
// the wall clock does not move: a different rate is the real hazard.
type clockNemesis struct {
	c     *Cluster
	h     *History
	rng   *rand.Rand
	log   *slog.Logger
	drift float64
	every time.Duration
}

// checkClockNemesis fails unless every node's rookeryd reads a rate file.
func checkClockNemesis(c *Cluster) error {
	for _, n := range c.Nodes {
		if _, err := os.Stat(filepath.Join(n.DataDir, leaseClockRateFile)); err != nil {
			return fmt.Errorf("jepsen: clock nemesis: %s has no %s: build rookeryd with -tags clocknemesis", n.ID, leaseClockRateFile)
		}
	}
	return nil
}

// run changes rates until ctx ends, then sets every clock back to 1.
func (n *clockNemesis) run(ctx context.Context) {
	defer n.set(nil)
	for {
		rates := make([]float64, len(n.c.Nodes))
		for i := range rates {
			rates[i] = 1 - n.drift
			if n.rng.IntN(2) == 0 {
				rates[i] += 2 * n.drift * n.rng.Float64()
			}
		}
		rec := n.h.StartFault(NemesisClock, n.describe(rates))
		n.set(rates)
		sleepCtx(ctx, n.every+time.Duration(n.rng.Int64N(int64(n.every)+1)))
		n.h.EndFault(rec, nil)
		if ctx.Err() != nil {
			return
		}
	}
}

func (n *clockNemesis) describe(rates []float64) string {
	parts := make([]string, len(rates))
	for i, r := range rates {
		parts[i] = fmt.Sprintf("%s=%.2f", n.c.Nodes[i].ID, r)
	}
	return "lease clock rates " + strings.Join(parts, " ")
}

// set writes each node's rate (nil: 1 for all), atomically so the node
// never reads half a number. A node whose data dir is gone (removed by the
// member nemesis) is skipped; it starts at rate 1 when re-added.
func (n *clockNemesis) set(rates []float64) {
	for i, node := range n.c.Nodes {
		r := 1.0
		if rates != nil {
			r = rates[i]
		}
		path := filepath.Join(node.DataDir, leaseClockRateFile)
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(strconv.FormatFloat(r, 'f', 3, 64)+"\n"), 0o644); err != nil {
			n.log.Info("clock nemesis: rate not set", "node", node.ID, "err", err)
			continue
		}
		if err := os.Rename(tmp, path); err != nil {
			n.log.Info("clock nemesis: rate not set", "node", node.ID, "err", err)
		}
	}
}
