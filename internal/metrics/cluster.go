package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rookery/rookery/cluster"
)

// ClusterHooks counts what a cluster.Node reports through cluster.Hooks:
// log appends (their duration is dominated by fsync) and failed writes.
type ClusterHooks struct {
	fsync    prometheus.Histogram
	failed   *prometheus.CounterVec
	appendEr prometheus.Counter
}

// NewClusterHooks registers the hook metrics on reg.
func NewClusterHooks(reg prometheus.Registerer) *ClusterHooks {
	h := &ClusterHooks{
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rookery_disk_log_fsync_duration_seconds",
			Help:    "Time to append entries to the raft log store, sync(s) to disk included.",
			Buckets: durationBuckets,
		}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rookery_server_proposals_failed_total",
			Help: "Writes through this node that failed as a whole, by reason (no_leader, timeout, unavailable, canceled, shutdown, other).",
		}, []string{"reason"}),
		appendEr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rookery_disk_log_append_failures_total",
			Help: "Appends to the raft log store that returned an error.",
		}),
	}
	for _, r := range []string{"no_leader", "timeout", "unavailable", "canceled", "shutdown", "other"} {
		h.failed.WithLabelValues(r) // export zeros, so rate() works from the first failure
	}
	reg.MustRegister(h.fsync, h.failed, h.appendEr)
	return h
}

// Hooks returns the cluster.Hooks to put in cluster.Config.
func (h *ClusterHooks) Hooks() cluster.Hooks {
	return cluster.Hooks{
		StoreLogs: func(d time.Duration, _ int, err error) {
			if err != nil {
				h.appendEr.Inc()
				return
			}
			h.fsync.Observe(d.Seconds())
		},
		ProposalFailed: func(reason string) { h.failed.WithLabelValues(reason).Inc() },
	}
}
