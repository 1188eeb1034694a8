package metrics

import (
	"fmt"

	armon "github.com/armon/go-metrics"
	armonprom "github.com/armon/go-metrics/prometheus"
	gometrics "github.com/hashicorp/go-metrics"
	gometricsprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// RaftBridge carries hashicorp/raft's own metrics (emitted through
// hashicorp/go-metrics) and raft-boltdb's (through armon/go-metrics) into a
// Prometheus registry, under the names those libraries choose
// (raft_commitTime, raft_boltdb_storeLogs, …; timings are summaries in
// milliseconds). raft's commit time is also turned into the histogram
// rookery_raft_commit_duration_seconds, which alerts and dashboards use.
//
// Both libraries only report to a process-wide sink. InstallGlobal sets it;
// call it once, from main: two nodes in one process (tests) would mix
// their figures.
type RaftBridge struct {
	sink   gometrics.MetricSink
	armon  armon.MetricSink
	commit prometheus.Histogram
}

// NewRaftBridge registers the bridge's collectors on reg.
func NewRaftBridge(reg prometheus.Registerer) (*RaftBridge, error) {
	b := &RaftBridge{commit: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "rookery_raft_commit_duration_seconds",
		Help:    "Time from a leader appending an entry to its commit (raft's commitTime), on the leader.",
		Buckets: durationBuckets,
	})}
	if err := reg.Register(b.commit); err != nil {
		return nil, err
	}
	// Expiration 0: series never vanish, so rate() over a counter that
	// stopped moving stays right.
	hs, err := gometricsprom.NewPrometheusSinkFrom(gometricsprom.PrometheusOpts{
		Registerer: reg, Name: "rookery_go_metrics_raft_sink",
	})
	if err != nil {
		return nil, fmt.Errorf("metrics: raft go-metrics sink: %w", err)
	}
	as, err := armonprom.NewPrometheusSinkFrom(armonprom.PrometheusOpts{
		Registerer: reg, Name: "rookery_go_metrics_boltdb_sink",
	})
	if err != nil {
		return nil, fmt.Errorf("metrics: raft-boltdb go-metrics sink: %w", err)
	}
	b.sink = gometrics.FanoutSink{commitSink{b.commit}, hs}
	b.armon = as
	return b, nil
}

// perPeerPrefixes are raft metrics emitted twice, once with the peer ID in
// the name and once with a peer_id label; only the labelled ones are kept.
var perPeerPrefixes = []string{
	"raft.replication.appendEntries.rpc.",
	"raft.replication.appendEntries.logs.",
	"raft.replication.heartbeat.",
	"raft.replication.installSnapshot.",
}

// InstallGlobal points go-metrics' process-wide sinks at the bridge.
func (b *RaftBridge) InstallGlobal() error {
	hc := gometrics.DefaultConfig("")
	hc.EnableHostname, hc.EnableRuntimeMetrics = false, false // the Go collector covers the runtime
	hc.BlockedPrefixes = perPeerPrefixes
	if _, err := gometrics.NewGlobal(hc, b.sink); err != nil {
		return fmt.Errorf("metrics: install raft go-metrics sink: %w", err)
	}
	ac := armon.DefaultConfig("")
	ac.EnableHostname, ac.EnableRuntimeMetrics = false, false
	if _, err := armon.NewGlobal(ac, b.armon); err != nil {
		return fmt.Errorf("metrics: install raft-boltdb go-metrics sink: %w", err)
	}
	return nil
}

// commitSink observes raft's commitTime samples (milliseconds) in the
// commit histogram and ignores everything else.
type commitSink struct{ h prometheus.Histogram }

func (s commitSink) AddSample(key []string, val float32) {
	if len(key) == 2 && key[0] == "raft" && key[1] == "commitTime" {
		s.h.Observe(float64(val) / 1000)
	}
}

func (s commitSink) AddSampleWithLabels(key []string, val float32, _ []gometrics.Label) {
	s.AddSample(key, val)
}
func (commitSink) SetGauge([]string, float32)                                 {}
func (commitSink) SetGaugeWithLabels([]string, float32, []gometrics.Label)    {}
func (commitSink) EmitKey([]string, float32)                                  {}
func (commitSink) IncrCounter([]string, float32)                              {}
func (commitSink) IncrCounterWithLabels([]string, float32, []gometrics.Label) {}
