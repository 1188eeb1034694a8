package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPercentileUsesNearestRank(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	s := merge([]*sample{{lat: lat[50:]}, {lat: lat[:50]}}, time.Second) // merge sorts
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0.50, 50 * time.Millisecond},
		{0.99, 99 * time.Millisecond},
		{1, 100 * time.Millisecond},
		{0, time.Millisecond},
	}
	for _, tc := range tests {
		if got := s.percentile(tc.q); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := (&sample{}).percentile(0.5); got != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got)
	}
}

func TestRateCountsOnlyOpsInsideTheWindow(t *testing.T) {
	tests := []struct {
		name string
		s    sample
		want float64
	}{
		{"Window", sample{lat: make([]time.Duration, 30), inWindow: 20, window: 2 * time.Second, elapsed: 10 * time.Second}, 10},
		{"NoWindowUsesElapsed", sample{lat: make([]time.Duration, 30), elapsed: 3 * time.Second}, 10},
		{"NothingMeasured", sample{}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.rate(); got != tc.want {
				t.Fatalf("rate = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMergeKeepsFirstErrorAndSumsCounts(t *testing.T) {
	a, b := &sample{window: time.Second, inWindow: 2}, &sample{window: time.Second, inWindow: 3}
	b.fail(errors.New("boom"))
	b.fail(errors.New("later"))
	m := merge([]*sample{a, b}, 2*time.Second)
	if m.errors != 2 || m.firstErr == nil || m.firstErr.Error() != "boom" || m.inWindow != 5 || m.window != time.Second {
		t.Fatalf("merge = %+v", m)
	}
}

func TestParseMupdateFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, c mupdateConfig)
	}{
		{"TwoTargetsInOrder", []string{"--target", "cyrus=127.0.0.1:13905", "--target", "rookery=127.0.0.1:3905", "--conns", "1, 4", "--duration", "2s"}, "",
			func(t *testing.T, c mupdateConfig) {
				if len(c.Targets) != 2 || c.Targets[0].Name != "cyrus" || c.Targets[1].Addr != "127.0.0.1:3905" {
					t.Fatalf("targets = %+v", c.Targets)
				}
				if len(c.Conns) != 2 || c.Conns[1] != 4 || c.Duration != 2*time.Second || !validRunID(c.RunID) {
					t.Fatalf("config = %+v", c)
				}
			}},
		{"NoTarget", nil, "at least one --target", nil},
		{"TargetWithoutName", []string{"--target", "127.0.0.1:3905"}, "want name=host:port", nil},
		{"TargetWithoutPort", []string{"--target", "r=127.0.0.1"}, "needs a port", nil},
		{"ZeroConns", []string{"--target", "r=127.0.0.1:1", "--conns", "1,0"}, "--conns", nil},
		{"RunIDWithDot", []string{"--target", "r=127.0.0.1:1", "--run-id", "a.b"}, "--run-id", nil},
		{"StrayArgument", []string{"--target", "r=127.0.0.1:1", "extra"}, "unexpected arguments", nil},
		{"ResourcesPerTarget", []string{"--target", "cyrus=127.0.0.1:1", "--target", "r=127.0.0.1:2",
			"--pids", "cyrus=10,11", "--metrics", "r=http://127.0.0.1:7201/metrics,http://127.0.0.1:7202/metrics", "--pids", "r=12"}, "",
			func(t *testing.T, c mupdateConfig) {
				if got := c.Pids["cyrus"]; len(got) != 2 || got[1] != 11 || len(c.Pids["r"]) != 1 {
					t.Fatalf("pids = %v", c.Pids)
				}
				if got := c.Metrics["r"]; len(got) != 2 || got[1] != "http://127.0.0.1:7202/metrics" || len(c.Metrics["cyrus"]) != 0 {
					t.Fatalf("metrics = %v", c.Metrics)
				}
			}},
		{"PidsOfNoTarget", []string{"--target", "r=127.0.0.1:1", "--pids", "cyrus=10"}, `name "cyrus" is not a --target`, nil},
		{"MetricsOfNoTarget", []string{"--target", "r=127.0.0.1:1", "--metrics", "x=http://127.0.0.1:7201/metrics"}, `name "x" is not a --target`, nil},
		{"PidNotANumber", []string{"--target", "r=127.0.0.1:1", "--pids", "r=abc"}, "not a positive number", nil},
		{"MetricsWithoutName", []string{"--target", "r=127.0.0.1:1", "--metrics", "http://127.0.0.1:7201/metrics"}, "want name=URL", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseMupdateFlags(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestPrintRatiosDividesByTheFirstTarget(t *testing.T) {
	mk := func(name string, rate int, p50 time.Duration) *targetReport {
		lat := []time.Duration{p50}
		return &targetReport{Target: target{Name: name}, Rows: []row{{Phase: phaseFind, Conns: 1,
			S: &sample{lat: lat, window: time.Second, inWindow: rate}}}}
	}
	var buf bytes.Buffer
	printRatios(&buf, []*targetReport{mk("cyrus", 100, 4*time.Millisecond), mk("rookery", 250, time.Millisecond)})
	out := buf.String()
	if !strings.Contains(out, "ratio rookery/cyrus") {
		t.Fatalf("no ratio header:\n%s", out)
	}
	line := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, phaseFind) {
			line = l
		}
	}
	if f := strings.Fields(line); len(f) < 3 || f[len(f)-3] != "2.50" || f[len(f)-2] != "0.25" {
		t.Fatalf("ratio row %q, want ops/s 2.50 and p50 0.25", line)
	}
}
