package main

import (
	"bytes"
	"errors"
	"fmt"
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
		{"OneRoundByDefault", []string{"--target", "r=127.0.0.1:1"}, "",
			func(t *testing.T, c mupdateConfig) {
				if c.Rounds != 1 {
					t.Fatalf("rounds = %d, want 1", c.Rounds)
				}
			}},
		{"Rounds", []string{"--target", "r=127.0.0.1:1", "--rounds", "3"}, "",
			func(t *testing.T, c mupdateConfig) {
				if c.Rounds != 3 {
					t.Fatalf("rounds = %d, want 3", c.Rounds)
				}
			}},
		{"ZeroRounds", []string{"--target", "r=127.0.0.1:1", "--rounds", "0"}, "--rounds must be at least 1", nil},
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

func reportOf(name string, rate int, p50 time.Duration) *targetReport {
	lat := []time.Duration{p50}
	return &targetReport{Target: target{Name: name}, Rows: []row{{Phase: phaseFind, Conns: 1,
		S: &sample{lat: lat, window: time.Second, inWindow: rate}}}}
}

// ratioRow returns the fields of the find row after header in out.
func ratioRow(t *testing.T, out, header string) []string {
	t.Helper()
	_, after, ok := strings.Cut(out, header)
	if !ok {
		t.Fatalf("no %q in:\n%s", header, out)
	}
	for _, l := range strings.Split(after, "\n") {
		if strings.Contains(l, phaseFind) {
			return strings.Fields(l)
		}
	}
	t.Fatalf("no find row after %q:\n%s", header, out)
	return nil
}

func TestPrintRatiosDividesByTheFirstTarget(t *testing.T) {
	var buf bytes.Buffer
	printRatios(&buf, []*targetReport{reportOf("cyrus", 100, 4*time.Millisecond), reportOf("rookery", 250, time.Millisecond)})
	if f := ratioRow(t, buf.String(), "ratio rookery/cyrus"); len(f) < 3 || f[len(f)-3] != "2.50" || f[len(f)-2] != "0.25" {
		t.Fatalf("ratio row %q, want ops/s 2.50 and p50 0.25", f)
	}
}

func TestLimitSharesDivideEveryOtherTargetByTheLimit(t *testing.T) {
	reps := []*targetReport{reportOf("cyrus", 100, 4*time.Millisecond), reportOf("rookery", 240, 2*time.Millisecond),
		reportOf("floor", 300, time.Millisecond)}
	var buf bytes.Buffer
	printLimitShares(&buf, reps, "floor")
	out := buf.String()
	if f := ratioRow(t, out, "share of the machine's limit: rookery/floor"); f[len(f)-3] != "0.80" || f[len(f)-2] != "2.00" {
		t.Fatalf("share row %q, want ops/s 0.80 and p50 2.00", f)
	}
	if strings.Contains(out, "cyrus/floor") || strings.Contains(out, "floor/floor") {
		t.Fatalf("baseline or limit given as a share:\n%s", out)
	}
	buf.Reset()
	printLimitShares(&buf, reps, "")
	if buf.Len() != 0 {
		t.Fatalf("shares without --limit:\n%s", buf.String())
	}
}

// roundsOf is a report with a find row per rate, one per round.
func roundsOf(name string, p50 time.Duration, rates ...int) *targetReport {
	rep := &targetReport{Target: target{Name: name}}
	for i, rate := range rates {
		rep.Rows = append(rep.Rows, row{Phase: phaseFind, Conns: 1, Round: i + 1,
			S: &sample{lat: []time.Duration{p50}, window: time.Second, inWindow: rate}})
	}
	return rep
}

func TestRatiosOfSeveralRoundsEndWithTheMedianOfEachRoundsRatio(t *testing.T) {
	tests := []struct {
		name       string
		base, rep  []int
		wantMedian string // "" = no median row
	}{
		// Per-round ratios 2.0, 0.5, 1.5: the median is the round's ratio
		// in the middle, not the ratio of the summed rates (1.17).
		{"OddRounds", []int{100, 400, 200}, []int{200, 200, 300}, "1.50"},
		{"EvenRoundsAverageTheMiddleTwo", []int{100, 100, 100, 100}, []int{50, 100, 300, 400}, "2.00"},
		{"OneRoundHasNoMedian", []int{100}, []int{200}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			printRatios(&buf, []*targetReport{roundsOf("cyrus", time.Millisecond, tc.base...), roundsOf("rookery", time.Millisecond, tc.rep...)})
			out := buf.String()
			var median []string
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "median of") {
					median = strings.Fields(l)
				}
			}
			if tc.wantMedian == "" {
				if median != nil {
					t.Fatalf("a median row for one round:\n%s", out)
				}
				return
			}
			if median == nil || median[len(median)-3] != tc.wantMedian || !strings.Contains(out, fmt.Sprintf("median of %d", len(tc.rep))) {
				t.Fatalf("median row %q, want ops/s %s over %d rounds:\n%s", median, tc.wantMedian, len(tc.rep), out)
			}
			if !strings.Contains(out, phaseFind+" #2") {
				t.Fatalf("rounds not labelled:\n%s", out)
			}
		})
	}
}

func TestPhaseListRepeatsEveryPhasePerRound(t *testing.T) {
	if ps := phaseList([]int{1, 16}, 1); len(ps) != 6 || ps[0].round != 0 {
		t.Fatalf("one round: %+v, want 6 phases without a round label", ps)
	}
	ps := phaseList([]int{1, 16}, 3)
	if len(ps) != 18 || ps[0].round != 1 || ps[6].round != 2 || ps[17].round != 3 || ps[6] != (phase{name: ps[0].name, conns: 1, round: 2}) {
		t.Fatalf("three rounds: %+v", ps)
	}
}
