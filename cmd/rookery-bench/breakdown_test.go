package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBreakdownAveragesTheNodesTimingsOverAPhase reads two nodes' fixtures
// before and after a phase: averages are of what happened in between,
// raft's milliseconds and Rookery's seconds agree, and go-metrics'
// summaries (older nodes) are read as well as histograms.
func TestBreakdownAveragesTheNodesTimingsOverAPhase(t *testing.T) {
	readings := map[string]nodeMetrics{}
	for _, at := range []string{"t0", "t1"} {
		sum := newNodeMetrics()
		for _, node := range []string{"leader", "follower"} {
			m, err := parseNodeMetrics(readFixture(t, at+"/"+node+".metrics"))
			if err != nil {
				t.Fatal(err)
			}
			sum.add(m)
		}
		readings[at] = sum
	}
	tm := timingsSince(readings["t0"].timings, readings["t1"].timings)
	tests := []struct {
		what string
		got  timing
		want time.Duration
	}{
		{"command (RESERVE and ACTIVATE)", commandTiming(phaseCreatePersist, tm), 2100 * time.Microsecond},
		{"commit", tm["raft_commitTime"], 1500 * time.Microsecond},
		{"leader append (a summary)", tm["raft_leader_dispatchLog"], 400 * time.Microsecond},
		{"round trip", tm["raft_replication_appendEntries_rpc"], 900 * time.Microsecond},
		{"follower append", tm["raft_rpc_appendEntries_storeLogs"], 500 * time.Microsecond},
		{"log sync, both nodes", tm["rookery_disk_log_fsync_duration_seconds"], 450 * time.Microsecond},
		{"apply", tm["raft_fsm_applyBatch"], 50 * time.Microsecond},
	}
	for _, tc := range tests {
		got, ok := tc.got.avg()
		if d := got - tc.want; !ok || d > time.Microsecond || d < -time.Microsecond {
			t.Errorf("%s: %v (ok %v), want %v", tc.what, got, ok, tc.want)
		}
	}
	if _, ok := commandTiming(phaseFind, tm).avg(); ok {
		t.Error("no FIND ran between the readings, yet a FIND time was averaged")
	}

	var out bytes.Buffer
	printBreakdown(&out, []row{
		{Phase: phaseCreatePersist, Conns: 16, Use: spend{NodesOK: true, Timings: tm}},
		{Phase: phaseFind, Conns: 16, Use: spend{NodesOK: true, Timings: tm}},
	})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a title, a header and the create row only:\n%s", out.String())
	}
	for _, cell := range []string{"2.100", "1.500", "0.600", "0.400", "0.900", "0.500", "0.450", "0.050"} {
		if !strings.Contains(lines[2], cell) {
			t.Errorf("row %q lacks %s", lines[2], cell)
		}
	}
}

// TestSpendCarriesTimingsFromTheNodes: the probe that reads /metrics before
// and after a phase hands the timings to the report.
func TestSpendCarriesTimingsFromTheNodes(t *testing.T) {
	at := "t0"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(readFixture(t, at+"/leader.metrics"))
	}))
	defer srv.Close()
	p := &probe{metrics: []string{srv.URL}, client: srv.Client(), procDir: "testdata/spend/t0"}
	r0 := p.read(t.Context())
	at = "t1"
	r1 := p.read(t.Context())
	u := since(r0, r1)
	if got, ok := u.Timings["raft_commitTime"].avg(); !ok || (got-1500*time.Microsecond).Abs() > time.Microsecond {
		t.Errorf("commit %v (ok %v) over the phase, want 1.5ms", got, ok)
	}
}
