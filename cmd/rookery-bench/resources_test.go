package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHostCPUSeparatesBusyFromStealAndIdle(t *testing.T) {
	tests := []struct {
		name        string
		stat        string
		busy, steal float64
		ok          bool
	}{
		{"user nice system irq softirq are busy; idle and iowait are not",
			"cpu  100 20 30 5000 70 5 15 40 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n", 1.70, 0.40, true},
		{"an old kernel's line without guest columns", "cpu  100 0 0 0 0 0 0 7\n", 1.00, 0.07, true},
		{"too few columns", "cpu  100 20 30 5000\n", 0, 0, false},
		{"not the aggregate line first", "cpu0 100 20 30 5000 70 5 15 40\n", 0, 0, false},
		{"a column that is not a number", "cpu  100 x 30 5000 70 5 15 40\n", 0, 0, false},
		{"empty", "", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			busy, steal, ok := parseHostCPU([]byte(tt.stat))
			if ok != tt.ok || !near(busy, tt.busy) || !near(steal, tt.steal) {
				t.Fatalf("parseHostCPU = %v, %v, %v; want %v, %v, %v", busy, steal, ok, tt.busy, tt.steal, tt.ok)
			}
		})
	}
}

func TestProcCPUCountsFieldsAfterTheCommandName(t *testing.T) {
	tests := []struct {
		name string
		stat string
		cpu  uint64 // ticks
		ok   bool
	}{
		{"a name with spaces and a parenthesis", "7 (a b) c)) S 1 7 7 0 -1 0 0 0 0 0 250 50 9 9 20 0", 300, true},
		{"a plain name", "7 (mupdate) S 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0", 3, true},
		{"cut short", "7 (mupdate) S 1 7 7 0 -1 0 0 0 0 0 1", 0, false},
		{"no name", "7 mupdate S 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0", 0, false},
		{"a time that is not a number", "7 (m) S 1 7 7 0 -1 0 0 0 0 0 x 2 0 0 20 0", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cpu, ok := parseProcCPU([]byte(tt.stat))
			if ok != tt.ok || cpu != tt.cpu {
				t.Fatalf("parseProcCPU = %v, %v; want %v, %v", cpu, ok, tt.cpu, tt.ok)
			}
		})
	}
}

func TestNodeMetricsReadsCPUCommitsAndSyncs(t *testing.T) {
	leader, err := parseNodeMetrics(readFixture(t, "t0/leader.metrics"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{seriesCPU: 10.5, seriesCommits: 1000, seriesSyncs: 1000}
	for k, v := range want {
		if leader.values[k] != v {
			t.Errorf("leader %s = %v, want %v", k, leader.values[k], v)
		}
	}
	follower, err := parseNodeMetrics(readFixture(t, "t0/follower.metrics"))
	if err != nil {
		t.Fatal(err)
	}
	if follower.values[seriesCommits] != 0 || follower.values[seriesSyncs] != 990 {
		t.Errorf("a follower, which times no commits: %v", follower.values)
	}
	if _, err := parseNodeMetrics([]byte("process_cpu_seconds_total{ 1\n")); err == nil {
		t.Error("a broken exposition was accepted")
	}
}

// TestPhaseSpendIsTheDifferenceOfTwoReadings reads fixtures standing for
// /proc and two Rookery nodes' /metrics before and after a phase.
func TestPhaseSpendIsTheDifferenceOfTwoReadings(t *testing.T) {
	var at atomic.Value
	at.Store("t0")
	serve := func(file string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(readFixture(t, at.Load().(string)+"/"+file))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	urls := []string{serve("leader.metrics"), serve("follower.metrics")}
	p := &probe{pids: []int{4242}, metrics: urls, client: http.DefaultClient}
	ctx := context.Background()

	p.procDir = filepath.Join("testdata", "spend", "t0")
	r0 := p.read(ctx)
	at.Store("t1")
	p.procDir = filepath.Join("testdata", "spend", "t1")
	r1 := p.read(ctx)
	r1.at = r0.at.Add(2 * time.Second)

	u := since(r0, r1)
	if !u.HostOK || !near(u.BusyCores, 3.35/2) || !near(u.StealCores, 0.30/2) {
		t.Errorf("host: ok %v busy %.3f steal %.3f cores, want 1.675 and 0.150", u.HostOK, u.BusyCores, u.StealCores)
	}
	if !u.ProcOK || u.ProcCPU != 650*time.Millisecond {
		t.Errorf("processes: ok %v cpu %v, want 650ms", u.ProcOK, u.ProcCPU)
	}
	if !u.NodesOK || u.NodeCPU != 2250*time.Millisecond || u.Entries != 300 || u.Syncs != 600 {
		t.Errorf("nodes: ok %v cpu %v entries %v syncs %v, want 2.25s, 300, 600", u.NodesOK, u.NodeCPU, u.Entries, u.Syncs)
	}

	// A process that exited, or a node that stopped answering, makes that
	// part of the reading unknown instead of wrong.
	p.pids = []int{4242, 999999}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "stopping", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	p.metrics = append(urls, down.URL)
	r2 := p.read(ctx)
	r2.at = r1.at.Add(time.Second)
	if u := since(r1, r2); u.ProcOK || u.NodesOK || !u.HostOK {
		t.Errorf("with a lost process and node: %+v", u)
	}
}

func TestPrintSpendShowsUnknownsAsDashes(t *testing.T) {
	rows := []row{
		{Phase: phaseCreatePersist, Conns: 16, S: &sample{lat: make([]time.Duration, 1000)}, Use: spend{
			Wall: time.Second, HostOK: true, BusyCores: 1.6, StealCores: 0.1,
			NodesOK: true, NodeCPU: 700 * time.Millisecond, Entries: 250, Syncs: 700,
		}},
		{Phase: phaseFind, Conns: 16, S: &sample{lat: make([]time.Duration, 4000)}, Use: spend{
			Wall: time.Second, HostOK: true, BusyCores: 1.7,
			ProcOK: true, ProcCPU: 800 * time.Millisecond,
		}},
	}
	var out bytes.Buffer
	printSpend(&out, rows)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a title, a header and 2 rows:\n%s", out.String())
	}
	for i, want := range [][]string{
		{"create, persistent conns", "16", "1.60", "0.10", "-", "0.700", "250", "8.00", "2.80"},
		{"find, persistent conns", "16", "1.70", "0.00", "0.200", "-", "-", "-", "-"},
	} {
		line := lines[i+2]
		for _, cell := range want {
			if !strings.Contains(line, cell) {
				t.Errorf("row %d %q lacks %q", i, line, cell)
			}
		}
	}
	out.Reset()
	printSpend(&out, []row{{Phase: phaseFind, S: &sample{}}})
	if out.Len() != 0 {
		t.Errorf("nothing measured, yet printed:\n%s", out.String())
	}
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "spend", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func near(a, b float64) bool {
	d := a - b
	return d < 1e-9 && d > -1e-9
}
