package metrics

import (
	"sync"
	"testing"

	gometrics "github.com/hashicorp/go-metrics"
	gometricsprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// newTestBridge is a bridge on its own registry with a go-metrics instance
// of its own (not the process-wide one), as raft would report to it.
func newTestBridge(t testing.TB) (*prometheus.Registry, *gometrics.Metrics) {
	t.Helper()
	reg := prometheus.NewRegistry()
	b, err := NewRaftBridge(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := gometrics.DefaultConfig("")
	cfg.EnableHostname, cfg.EnableRuntimeMetrics = false, false
	m, err := gometrics.New(cfg, b.sink)
	if err != nil {
		t.Fatal(err)
	}
	return reg, m
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := make(map[string]*dto.MetricFamily, len(fams))
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

func TestRaftTimingsAreMillisecondHistogramsAndCommitTimeIsInSeconds(t *testing.T) {
	reg, m := newTestBridge(t)
	for _, ms := range []float32{0.3, 0.3, 4, 20000} {
		m.AddSample([]string{"raft", "commitTime"}, ms)
	}
	fams := gather(t, reg)
	f := fams["raft_commitTime"]
	if f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("raft_commitTime = %v, want a histogram", f)
	}
	h := f.Metric[0].GetHistogram()
	if h.GetSampleCount() != 4 || h.GetSampleSum() < 20004.5 || h.GetSampleSum() > 20004.7 {
		t.Errorf("raft_commitTime count %d sum %v, want 4 and 20004.6", h.GetSampleCount(), h.GetSampleSum())
	}
	var under1ms, last uint64
	for _, b := range h.Bucket {
		if b.GetCumulativeCount() < last {
			t.Errorf("bucket le=%v holds %d, below the one before (%d)", b.GetUpperBound(), b.GetCumulativeCount(), last)
		}
		last = b.GetCumulativeCount()
		if b.GetUpperBound() <= 1 {
			under1ms = b.GetCumulativeCount()
		}
	}
	if under1ms != 2 || last != 3 {
		t.Errorf("buckets: %d at or under 1 ms and %d in the last, want 2 and 3 (the 20 s one only in +Inf)", under1ms, last)
	}
	c := fams["rookery_raft_commit_duration_seconds"].Metric[0].GetHistogram()
	if c.GetSampleCount() != 4 || c.GetSampleSum() < 20.004 || c.GetSampleSum() > 20.005 {
		t.Errorf("rookery_raft_commit_duration_seconds count %d sum %v, want 4 and 20.0046 s", c.GetSampleCount(), c.GetSampleSum())
	}
}

func TestRaftCountersGaugesAndLabelsKeepTheirKind(t *testing.T) {
	reg, m := newTestBridge(t)
	peer := []gometrics.Label{{Name: "peer_id", Value: "n2"}}
	m.IncrCounterWithLabels([]string{"raft", "apply"}, 2, nil)
	m.IncrCounterWithLabels([]string{"raft", "apply"}, 3, nil)
	m.SetGaugeWithLabels([]string{"raft", "leader", "oldestLogAge"}, 7, nil)
	m.SetGaugeWithLabels([]string{"raft", "leader", "oldestLogAge"}, 5, nil)
	m.AddSampleWithLabels([]string{"raft", "replication", "appendEntries", "rpc"}, 1, peer)
	m.AddSampleWithLabels([]string{"raft", "replication", "appendEntries", "rpc"}, 1, []gometrics.Label{{Name: "peer_id", Value: "n3"}})
	fams := gather(t, reg)
	tests := []struct {
		name string
		kind dto.MetricType
		n    int
		want float64
	}{
		{"raft_apply", dto.MetricType_COUNTER, 1, 5},
		{"raft_leader_oldestLogAge", dto.MetricType_GAUGE, 1, 5},
		{"raft_replication_appendEntries_rpc", dto.MetricType_HISTOGRAM, 2, 1},
	}
	for _, tc := range tests {
		f := fams[tc.name]
		if f == nil || f.GetType() != tc.kind || len(f.Metric) != tc.n {
			t.Errorf("%s = %v, want %d series of %v", tc.name, f, tc.n, tc.kind)
			continue
		}
		var got float64
		switch tc.kind {
		case dto.MetricType_COUNTER:
			got = f.Metric[0].GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			got = f.Metric[0].GetGauge().GetValue()
		default:
			got = float64(f.Metric[0].GetHistogram().GetSampleCount())
		}
		if got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, got, tc.want)
		}
	}
	if l := fams["raft_replication_appendEntries_rpc"].Metric[0].Label; len(l) != 1 || l[0].GetName() != "peer_id" {
		t.Errorf("raft_replication_appendEntries_rpc labels %v, want peer_id", l)
	}
}

func TestRaftPerPeerNamesAreDroppedInFavourOfTheLabelledSeries(t *testing.T) {
	reg, m := newTestBridge(t)
	m.AddSample([]string{"raft", "replication", "appendEntries", "rpc", "n2"}, 1)
	m.IncrCounter([]string{"raft", "replication", "heartbeat", "n2"}, 1)
	for name := range gather(t, reg) {
		if name == "raft_replication_appendEntries_rpc_n2" || name == "raft_replication_heartbeat_n2" {
			t.Errorf("%s exported; per-peer names are dropped", name)
		}
	}
}

func TestARaftSampleOnAKnownSeriesDoesNotAllocate(t *testing.T) {
	key := []string{"raft", "rpc", "appendEntries", "storeLogs"}
	labels := []gometrics.Label{{Name: "peer_id", Value: "n2"}}
	s := newRaftSink(prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x"}))
	s.AddSampleWithLabels(key, 1, labels)
	if n := testing.AllocsPerRun(1000, func() {
		s.AddSampleWithLabels(key, 0.4, labels)
		s.IncrCounterWithLabels(key, 1, nil)
	}); n != 0 {
		t.Errorf("a sample and a counter on known series allocate %v times, want 0", n)
	}
}

func TestRaftSinkTakesSamplesWhileScraped(t *testing.T) {
	reg, m := newTestBridge(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				m.AddSampleWithLabels([]string{"raft", "fsm", "apply"}, float32(i%50), []gometrics.Label{{Name: "w", Value: string(rune('a' + w))}})
				m.IncrCounter([]string{"raft", "apply"}, 1)
			}
		}()
	}
	for range 20 {
		gather(t, reg)
	}
	wg.Wait()
	fams := gather(t, reg)
	if v := fams["raft_apply"].Metric[0].GetCounter().GetValue(); v != 8000 {
		t.Errorf("raft_apply = %v after 4×2000 increments", v)
	}
	var n uint64
	for _, s := range fams["raft_fsm_apply"].Metric {
		n += s.GetHistogram().GetSampleCount()
	}
	if n != 8000 {
		t.Errorf("raft_fsm_apply counted %d samples, want 8000", n)
	}
}

// BenchmarkRaftSample compares one labelled raft timing through go-metrics
// into this sink and into go-metrics' own Prometheus sink, which rookeryd
// used before.
func BenchmarkRaftSample(b *testing.B) {
	key := []string{"raft", "replication", "appendEntries", "rpc"}
	labels := []gometrics.Label{{Name: "peer_id", Value: "n2"}}
	cfg := gometrics.DefaultConfig("")
	cfg.EnableHostname, cfg.EnableRuntimeMetrics = false, false
	b.Run("raftSink", func(b *testing.B) {
		_, m := newTestBridge(b)
		for b.Loop() {
			m.AddSampleWithLabels(key, 0.4, labels)
		}
	})
	b.Run("go-metrics-prometheus", func(b *testing.B) {
		ps, err := gometricsprom.NewPrometheusSinkFrom(gometricsprom.PrometheusOpts{Registerer: prometheus.NewRegistry(), Name: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		cfg := *cfg
		cfg.BlockedPrefixes = perPeerPrefixes
		m, err := gometrics.New(&cfg, ps)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			m.AddSampleWithLabels(key, 0.4, labels)
		}
	})
}

// TestARaftNameReusedWithAnotherKindOrLabelsKeepsTheScrapeWorking: raft
// reporting one name as two kinds, or with two label sets, would make
// every scrape fail; the first series is kept and the other dropped.
func TestARaftNameReusedWithAnotherKindOrLabelsKeepsTheScrapeWorking(t *testing.T) {
	reg, m := newTestBridge(t)
	m.IncrCounter([]string{"raft", "apply"}, 1)
	m.AddSample([]string{"raft", "apply"}, 2)
	m.SetGauge([]string{"raft", "apply"}, 3)
	m.AddSampleWithLabels([]string{"raft", "rpc"}, 1, []gometrics.Label{{Name: "peer_id", Value: "n2"}})
	m.AddSampleWithLabels([]string{"raft", "rpc"}, 1, []gometrics.Label{{Name: "node", Value: "n2"}})
	m.AddSampleWithLabels([]string{"raft", "rpc"}, 1, []gometrics.Label{{Name: "peer_id", Value: "n3"}})
	fams := gather(t, reg)
	if f := fams["raft_apply"]; f == nil || f.GetType() != dto.MetricType_COUNTER || len(f.Metric) != 1 {
		t.Errorf("raft_apply = %v, want the counter alone", f)
	}
	if f := fams["raft_rpc"]; f == nil || len(f.Metric) != 2 {
		t.Errorf("raft_rpc = %v, want the two peer_id series", f)
	}
}
