package cluster

import (
	"time"

	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// ConsistencyReportToProto converts a report for the Cluster and Peer
// services.
func ConsistencyReportToProto(r ConsistencyReport) *rookeryv1.ConsistencyReport {
	out := &rookeryv1.ConsistencyReport{
		Revision:   r.Revision,
		CheckedBy:  r.CheckedBy,
		AtUnixNano: unixNanoOrZero(r.At),
		Consistent: r.Consistent,
		Summary:    r.Summary,
	}
	if r.HasQuorum {
		out.QuorumHash = r.QuorumHash.Bytes()
	}
	for _, m := range r.Members {
		pm := &rookeryv1.MemberHash{Id: m.ID, Verdict: m.Verdict, Error: m.Err}
		if m.Verdict != VerdictUnavailable {
			pm.Hash = m.Hash.Bytes()
		}
		out.Members = append(out.Members, pm)
	}
	return out
}

// AlarmsToProto converts alarms for Cluster.Status.
func AlarmsToProto(as []Alarm) []*rookeryv1.Alarm {
	out := make([]*rookeryv1.Alarm, 0, len(as))
	for _, a := range as {
		out = append(out, &rookeryv1.Alarm{
			Kind: a.Kind, Message: a.Message, SinceUnixNano: unixNanoOrZero(a.Since),
			BlocksReads: a.BlocksReads, NeedsRestart: a.NeedsRestart,
		})
	}
	return out
}

func unixNanoOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
