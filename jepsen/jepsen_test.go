package jepsen

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

var (
	runsFlag    = flag.Int("runs", 0, "number of full Jepsen runs (0: the short run of the normal test suite)")
	timeFlag    = flag.Duration("time", 60*time.Second, "workload duration of each full run")
	nodesFlag   = flag.Int("nodes", 0, "nodes per full run (0: alternate 3 and 5, each class meeting both over 12 runs)")
	nemesisFlag = flag.String("nemesis", "", "nemesis of every full run (default: cycle mixed, kill, pause, partition, transfer, member)")
	dirFlag     = flag.String("dir", "", "folder for run folders (default: $TMPDIR/rookery-jepsen/<time>)")
	seedFlag    = flag.Uint64("seed", 0, "random seed (0: from the clock)")
	clientsFlag = flag.Int("clients", 0, "clients per node in full runs, half gRPC, half MUPDATE (0: the default, 2)")
	verboseFlag = flag.Bool("jepsen.v", false, "log harness events to the test log")
	storeFlag   = flag.String("log-store", "", "raft.log_store of every node, bolt or wal (default: rookeryd's, bolt)")
	readFlag    = flag.String("read-mode", "", "raft.read_mode of every node, linearizable or lease (default: rookeryd's, linearizable)")
	extraFlag   = flag.String("rookeryd-flags", "", "more rookeryd flags for every node, space-separated (e.g. \"-raft.persist_before_replicate -raft.follower_hold 2ms\")")
	driftFlag   = flag.Float64("clock-drift", 0, "run the clock nemesis beside the main one: lease clock rates in [1-d, 1+d] (needs rookeryd built with -tags clocknemesis)")
)

// runConfig prepares a run's config with the test's binary and folder.
func runConfig(t *testing.T, name, root string) Config {
	cfg := DefaultConfig()
	cfg.Name = name
	cfg.Binary = rookerydBinary(t)
	cfg.Dir = filepath.Join(root, name)
	if *seedFlag != 0 {
		cfg.Seed = *seedFlag
	}
	cfg.Cluster.LogStore = *storeFlag
	cfg.Cluster.ReadMode = *readFlag
	cfg.Cluster.ExtraArgs = append(cfg.Cluster.ExtraArgs, strings.Fields(*extraFlag)...)
	cfg.ClockDrift = *driftFlag
	if *verboseFlag {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return cfg
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func runAndReport(t *testing.T, cfg Config) *RunResult {
	t.Helper()
	ctx := context.Background()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("run %s: %v (folder %s)", cfg.Name, err, cfg.Dir)
	}
	t.Log(res.Summary(cfg))
	for _, a := range res.Report.Anomalies {
		t.Logf("  %s: %s", a.Kind, a.Detail)
	}
	for _, p := range res.Problems {
		t.Logf("  problem: %s", p)
	}
	t.Logf("  folder: %s", res.Dir)
	return res
}

// TestJepsen runs the fault-injection suite. Without -runs it is the short
// run of the normal test suite: one 3-node cluster, 30 s under the mixed
// nemesis (every class once per round). With -runs=N it makes N runs of
// -time each, alternating 3 and 5 nodes and cycling the nemesis classes;
// run folders are kept under -dir.
func TestJepsen(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real clusters; skipped with -short")
	}
	if *runsFlag == 0 {
		root, err := os.MkdirTemp("", "rookery-jepsen-short-")
		if err != nil {
			t.Fatal(err)
		}
		cfg := runConfig(t, "short-3n-mixed", root)
		cfg.Duration = 30 * time.Second
		res := runAndReport(t, cfg)
		if !res.Report.Valid() || len(res.Problems) > 0 {
			t.Fatalf("the short run found a problem; its folder is kept: %s", res.Dir)
		}
		if res.Report.Faults == 0 || res.Report.OK == 0 {
			t.Fatalf("the short run exercised nothing: %s", res.Summary(cfg))
		}
		if res.Terms[0] == 0 || res.Terms[1] < res.Terms[0] {
			t.Fatalf("the run did not record the raft terms around its workload: %s", res.Summary(cfg))
		}
		os.RemoveAll(root)
		return
	}
	root := *dirFlag
	if root == "" {
		root = filepath.Join(os.TempDir(), "rookery-jepsen", time.Now().Format("20060102-150405"))
	}
	classes := append([]string{NemesisMixed}, Nemeses...)
	var lines []string
	failed := 0
	for i := 0; i < *runsFlag; i++ {
		nodes := *nodesFlag
		if nodes == 0 {
			// Alternate sizes, swapping every round of classes so that
			// each class meets both sizes.
			nodes = 3 + 2*((i+i/len(classes))%2)
		}
		nem := *nemesisFlag
		if nem == "" {
			nem = classes[i%len(classes)]
		}
		name := fmt.Sprintf("run%02d-%dn-%s", i+1, nodes, nem)
		if *storeFlag != "" {
			name += "-" + *storeFlag
		}
		if *readFlag != "" {
			name += "-" + *readFlag
		}
		if *driftFlag > 0 {
			name += fmt.Sprintf("-drift%g", *driftFlag)
		}
		t.Run(name, func(t *testing.T) {
			cfg := runConfig(t, name, root)
			cfg.Nodes, cfg.Nemesis, cfg.Duration = nodes, nem, *timeFlag
			if *clientsFlag > 0 {
				cfg.ClientsPerNode = *clientsFlag
			}
			res := runAndReport(t, cfg)
			lines = append(lines, res.Summary(cfg))
			if !res.Report.Valid() || len(res.Problems) > 0 {
				failed++
				t.Errorf("run %s is not valid; folder %s", name, res.Dir)
			}
		})
	}
	summary := strings.Join(lines, "\n") + "\n"
	_ = os.WriteFile(filepath.Join(root, "summary.txt"), []byte(summary), 0o644)
	t.Logf("%d runs, %d invalid; summaries in %s:\n%s", len(lines), failed, filepath.Join(root, "summary.txt"), summary)
}

// TestUnsafeStaleReadsAreCaught is the proof that the checker can fail: a
// client that reads with consistency STALE, from nodes the nemesis cuts off
// from the others, and records those reads as linearizable. Porcupine must
// find no linearization and the revision check must name stale reads.
func TestUnsafeStaleReadsAreCaught(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real cluster; skipped with -short")
	}
	root, err := os.MkdirTemp("", "rookery-jepsen-unsafe-")
	if err != nil {
		t.Fatal(err)
	}
	cfg := runConfig(t, "unsafe-stale-reads", root)
	cfg.UnsafeStaleReads = true
	cfg.Nemesis = NemesisIsolate
	cfg.Duration = 15 * time.Second
	cfg.FaultFor, cfg.QuietFor = 3*time.Second, time.Second
	res := runAndReport(t, cfg)
	if res.Report.Linearizable != porcupine.Illegal {
		t.Fatalf("porcupine says %s for a history with stale reads recorded as linearizable (folder %s)", res.Report.Linearizable, res.Dir)
	}
	if res.Report.Counts[AnomalyStaleRead] == 0 {
		t.Errorf("no stale-read anomaly reported: %v", res.Report.Counts)
	}
	if _, err := os.Stat(filepath.Join(res.Dir, "linearizability.html")); err != nil {
		t.Errorf("no visualisation written: %v", err)
	}
	// Only reads were unsafe: nothing else may be wrong.
	for kind, n := range res.Report.Counts {
		if kind != AnomalyStaleRead && kind != AnomalyNonlinearizable && n > 0 {
			t.Errorf("unexpected %d %s anomalies in the unsafe run", n, kind)
		}
	}
	if !t.Failed() {
		os.RemoveAll(root)
	}
}
