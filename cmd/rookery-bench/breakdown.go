package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Where a Rookery write's time goes. A rate alone does not say whether a
// cluster waits on its disks, on the round trip to a follower or on its own
// hand-offs, so each phase also reads the nodes' own timings and prints
// their averages over the phase: the MUPDATE command as the node saw it,
// raft's commit (leader append to quorum), the leader's append, the
// AppendEntries round trip to a follower, a follower's append, one log sync
// on any node, and the FSM apply. What the command took beyond the commit
// is the path outside raft: parsing, queueing for the proposer, the apply
// and the reply.

// timingFamily is a timing the breakdown reads, and the seconds one unit of
// it stands for: hashicorp/raft reports milliseconds, Rookery seconds.
type timingFamily struct {
	name string
	unit float64
}

var timingFamilies = []timingFamily{
	{"rookery_mupdate_command_duration_seconds", 1}, // split by command (see timingKey)
	{"raft_commitTime", 1e-3},
	{"raft_leader_dispatchLog", 1e-3},
	{"raft_replication_appendEntries_rpc", 1e-3},
	{"raft_rpc_appendEntries_storeLogs", 1e-3},
	{"rookery_disk_log_fsync_duration_seconds", 1},
	{"raft_fsm_applyBatch", 1e-3},
}

// timing is a sum of durations and how many there were.
type timing struct {
	Sum   float64 // seconds
	Count float64
}

func (t timing) avg() (time.Duration, bool) {
	if t.Count <= 0 {
		return 0, false
	}
	return seconds(t.Sum / t.Count), true
}

func (t timing) plus(u timing) timing { return timing{t.Sum + u.Sum, t.Count + u.Count} }

// timingKey names one metric of a family in a reading: MUPDATE command
// timings are kept per command, everything else per family.
func timingKey(family string, m *dto.Metric) string {
	if family != "rookery_mupdate_command_duration_seconds" {
		return family
	}
	for _, l := range m.GetLabel() {
		if l.GetName() == "command" {
			return family + "/" + l.GetValue()
		}
	}
	return family
}

// readTimings adds every timing family's sum (in seconds) and count to
// out, by timingKey. raft's timings are histograms since Rookery's own
// go-metrics sink, summaries before; both are read.
func readTimings(families map[string]*dto.MetricFamily, out map[string]timing) {
	for _, tf := range timingFamilies {
		f, ok := families[tf.name]
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			sum, n := m.GetHistogram().GetSampleSum(), float64(m.GetHistogram().GetSampleCount())
			if m.Summary != nil {
				sum, n = m.GetSummary().GetSampleSum(), float64(m.GetSummary().GetSampleCount())
			}
			k := timingKey(tf.name, m)
			out[k] = out[k].plus(timing{Sum: sum * tf.unit, Count: n})
		}
	}
}

// timingsSince is the timings of t1 less those of t0.
func timingsSince(t0, t1 map[string]timing) map[string]timing {
	out := make(map[string]timing, len(t1))
	for k, b := range t1 {
		a := t0[k]
		out[k] = timing{Sum: b.Sum - a.Sum, Count: b.Count - a.Count}
	}
	return out
}

// commandTiming is the node-side time of the commands a phase sends.
func commandTiming(phase string, t map[string]timing) timing {
	const f = "rookery_mupdate_command_duration_seconds/"
	if phase == phaseFind {
		return t[f+"FIND"]
	}
	return t[f+"RESERVE"].plus(t[f+"ACTIVATE"])
}

// printBreakdown prints the averages of every phase whose commands Rookery
// nodes timed (a FIND phase shows its command time alone).
func printBreakdown(out io.Writer, rows []row) {
	has := func(r row) bool { return r.Use.NodesOK && commandTiming(r.Phase, r.Use.Timings).Count > 0 }
	if !slices.ContainsFunc(rows, has) {
		return
	}
	fmt.Fprintln(out, "where a write's time goes (node-side averages over the phase, ms; outside raft = command - commit):")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tconns\tcommand\tcommit\toutside raft\tleader append\tround trip\tfollower append\tlog sync\tapply\t")
	for _, r := range rows {
		if !has(r) {
			continue
		}
		t := r.Use.Timings
		cmd, okCmd := commandTiming(r.Phase, t).avg()
		commit, okCommit := t["raft_commitTime"].avg()
		outside := "-"
		if okCmd && okCommit && r.Phase != phaseFind {
			outside = msAvg(cmd-commit, true)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.label(), r.Conns,
			msAvg(cmd, okCmd), msAvg(commit, okCommit), outside,
			msAvg(t["raft_leader_dispatchLog"].avg()), msAvg(t["raft_replication_appendEntries_rpc"].avg()),
			msAvg(t["raft_rpc_appendEntries_storeLogs"].avg()), msAvg(t["rookery_disk_log_fsync_duration_seconds"].avg()),
			msAvg(t["raft_fsm_applyBatch"].avg()))
	}
	tw.Flush()
}

func msAvg(d time.Duration, ok bool) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond))
}
