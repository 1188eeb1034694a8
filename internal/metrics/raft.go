package metrics

import (
	"fmt"

	armon "github.com/armon/go-metrics"
	armonprom "github.com/armon/go-metrics/prometheus"
	gometrics "github.com/hashicorp/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// RaftBridge carries hashicorp/raft's own metrics (emitted through
// hashicorp/go-metrics) and raft-boltdb's (through armon/go-metrics) into a
// Prometheus registry, under the names those libraries choose
// (raft_commitTime, raft_boltdb_storeLogs, …). raft's timings are
// histograms in milliseconds (raftSink); raft-boltdb's are summaries in
// milliseconds. raft's commit time is also turned into the histogram
// rookery_raft_commit_duration_seconds, which alerts and dashboards use.
//
// Both libraries only report to a process-wide sink. InstallGlobal sets it;
// call it once, from main: two nodes in one process (tests) would mix
// their figures.
type RaftBridge struct {
	sink  *raftSink
	armon armon.MetricSink
}

// NewRaftBridge registers the bridge's collectors on reg.
func NewRaftBridge(reg prometheus.Registerer) (*RaftBridge, error) {
	commit := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "rookery_raft_commit_duration_seconds",
		Help:    "Time from a leader appending an entry to its commit (raft's commitTime), on the leader.",
		Buckets: durationBuckets,
	})
	if err := reg.Register(commit); err != nil {
		return nil, err
	}
	sink := newRaftSink(commit)
	if err := reg.Register(sink); err != nil {
		return nil, fmt.Errorf("metrics: raft go-metrics sink: %w", err)
	}
	// raft-boltdb reports only around the journal's checkpoints, so its
	// go-metrics sink may cost what it costs. Expiration 0: series never
	// vanish, so rate() over a counter that stopped moving stays right.
	as, err := armonprom.NewPrometheusSinkFrom(armonprom.PrometheusOpts{
		Registerer: reg, Name: "rookery_go_metrics_boltdb_sink",
	})
	if err != nil {
		return nil, fmt.Errorf("metrics: raft-boltdb go-metrics sink: %w", err)
	}
	return &RaftBridge{sink: sink, armon: as}, nil
}

// perPeerPrefixes are raft metrics emitted twice, once with the peer ID in
// the name and once with a peer_id label; only the labelled ones are kept
// (raftSink drops these).
var perPeerPrefixes = []string{
	"raft.replication.appendEntries.rpc.",
	"raft.replication.appendEntries.logs.",
	"raft.replication.heartbeat.",
	"raft.replication.installSnapshot.",
}

// InstallGlobal points go-metrics' process-wide sinks at the bridge. No
// go-metrics filter is set: a filter joins every sample's key into a
// string, and raftSink drops the blocked names once per series instead.
func (b *RaftBridge) InstallGlobal() error {
	hc := gometrics.DefaultConfig("")
	hc.EnableHostname, hc.EnableRuntimeMetrics = false, false // the Go collector covers the runtime
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
