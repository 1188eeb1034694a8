package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rookery/rookery/cluster"
)

// ClusterHooks counts what a cluster.Node reports through cluster.Hooks:
// log appends (their duration is dominated by fsync), failed writes and
// how the leader confirmed its reads.
type ClusterHooks struct {
	fsync    prometheus.Histogram
	failed   *prometheus.CounterVec
	appendEr prometheus.Counter
	reads    *prometheus.CounterVec
	ckpt     prometheus.Histogram
	ckptEr   prometheus.Counter
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
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rookery_server_leader_reads_total",
			Help: "Read indexes this node took as leader, by how leadership was confirmed: lease (raft.read_mode lease, while the lease held) or round (a heartbeat round).",
		}, []string{"confirmed"}),
		ckpt: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rookery_disk_log_checkpoint_duration_seconds",
			Help:    "Time to write raft.journal's entries into raft.db (one bbolt transaction, two syncs); the append that triggered it waited as long.",
			Buckets: durationBuckets,
		}),
		ckptEr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rookery_disk_log_checkpoint_failures_total",
			Help: "Checkpoints of raft.journal into raft.db that failed (retried with the next append; the journal keeps the entries).",
		}),
	}
	for _, r := range []string{"no_leader", "timeout", "unavailable", "canceled", "shutdown", "other"} {
		h.failed.WithLabelValues(r) // export zeros, so rate() works from the first failure
	}
	reg.MustRegister(h.fsync, h.failed, h.appendEr, h.reads, h.ckpt, h.ckptEr)
	return h
}

// Hooks returns the cluster.Hooks to put in cluster.Config.
func (h *ClusterHooks) Hooks() cluster.Hooks {
	leaseReads, roundReads := h.reads.WithLabelValues("lease"), h.reads.WithLabelValues("round")
	return cluster.Hooks{
		StoreLogs: func(d time.Duration, _ int, err error) {
			if err != nil {
				h.appendEr.Inc()
				return
			}
			h.fsync.Observe(d.Seconds())
		},
		ProposalFailed: func(reason string) { h.failed.WithLabelValues(reason).Inc() },
		JournalCheckpoint: func(d time.Duration, _ int, err error) {
			if err != nil {
				h.ckptEr.Inc()
				return
			}
			h.ckpt.Observe(d.Seconds())
		},
		LeaderRead: func(lease bool) {
			if lease {
				leaseReads.Inc()
			} else {
				roundReads.Inc()
			}
		},
	}
}
