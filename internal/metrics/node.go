package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/fsm"
)

// Node is what the node collector reads; *cluster.Node implements it.
type Node interface {
	Status() cluster.Status
	LeaderChanges() uint64
	Store() *fsm.Store
	Alarms() []cluster.Alarm
	LastConsistencyCheck() (cluster.ConsistencyReport, bool)
}

// alarmKinds are exported at 0 when inactive, so alerts see the series
// before the first alarm; other kinds appear when raised.
var alarmKinds = []string{cluster.AlarmDiverged, cluster.AlarmInconsistent, cluster.AlarmDataCheck,
	cluster.AlarmDiskLog, cluster.AlarmDiskStable, cluster.AlarmDiskSnapshot, cluster.AlarmHalted}

var (
	descHasLeader = prometheus.NewDesc("rookery_server_has_leader",
		"1 if this node knows a leader, 0 if not.", nil, nil)
	descIsLeader = prometheus.NewDesc("rookery_server_is_leader",
		"1 if this node is the raft leader.", nil, nil)
	descLeaderChanges = prometheus.NewDesc("rookery_server_leader_changes_seen_total",
		"Leaders this node has seen elected or handed over to since it started.", nil, nil)
	descTerm = prometheus.NewDesc("rookery_raft_term",
		"Current raft term on this node.", nil, nil)
	descCommit = prometheus.NewDesc("rookery_raft_commit_index",
		"Highest raft log index this node knows committed.", nil, nil)
	descApplied = prometheus.NewDesc("rookery_raft_applied_index",
		"Highest raft log index applied to this node's directory.", nil, nil)
	descLastLog = prometheus.NewDesc("rookery_raft_last_log_index",
		"Highest index in this node's raft log.", nil, nil)
	descSnapshot = prometheus.NewDesc("rookery_raft_last_snapshot_index",
		"Raft index of this node's newest snapshot.", nil, nil)
	descPeerContact = prometheus.NewDesc("rookery_raft_peer_last_contact_seconds",
		"Seconds since this node last heard from a peer: on the leader, per follower (0 while heartbeats succeed); on a follower, for the leader.",
		[]string{"peer"}, nil)
	descMembers = prometheus.NewDesc("rookery_raft_members",
		"Servers in the raft configuration as this node sees it, by suffrage.", []string{"suffrage"}, nil)
	descMailboxes = prometheus.NewDesc("rookery_directory_mailboxes",
		"Mailboxes in this node's directory, by state (active, reserved) and server (the location's server part).",
		[]string{"state", "server"}, nil)
	descRevision = prometheus.NewDesc("rookery_directory_revision",
		"Directory revision applied on this node.", nil, nil)
	descReservedAge = prometheus.NewDesc("rookery_directory_reserved_oldest_age_seconds",
		"Age of the oldest RESERVED mailbox (a create or move that never finished); 0 when none.", nil, nil)
	descAlarm = prometheus.NewDesc("rookery_server_alarm",
		"1 while the alarm is active on this node (diverged, inconsistent, data-check, disk-log, disk-stable, disk-snapshot, halted, ...).",
		[]string{"alarm"}, nil)
	descReadsRefused = prometheus.NewDesc("rookery_server_reads_refused",
		"1 while an alarm makes this node refuse reads (its data cannot be trusted).", nil, nil)
	descCheckTime = prometheus.NewDesc("rookery_consistency_last_check_timestamp_seconds",
		"When this node last ran a cross-member consistency check (Unix time); absent before the first.", nil, nil)
	descCheckOK = prometheus.NewDesc("rookery_consistency_last_check_consistent",
		"1 if every member held the majority's directory hash in the last check this node ran.", nil, nil)
	descCheckDiverged = prometheus.NewDesc("rookery_consistency_diverged_members",
		"Members whose directory hash differed from the majority's in the last check this node ran.", nil, nil)
)

// NodeCollector reads a node's status at scrape time.
type NodeCollector struct {
	node Node
	now  func() time.Time
}

// NewNodeCollector returns a collector for node; register it once.
func NewNodeCollector(node Node) *NodeCollector {
	return &NodeCollector{node: node, now: time.Now}
}

// Describe implements prometheus.Collector.
func (c *NodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHasLeader, descIsLeader, descLeaderChanges, descTerm, descCommit,
		descApplied, descLastLog, descSnapshot, descPeerContact, descMembers, descMailboxes, descRevision, descReservedAge,
		descAlarm, descReadsRefused, descCheckTime, descCheckOK, descCheckDiverged} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *NodeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.node.Status()
	now := c.now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descHasLeader, boolValue(st.Leader.ID != ""))
	gauge(descIsLeader, boolValue(st.State == "Leader"))
	ch <- prometheus.MustNewConstMetric(descLeaderChanges, prometheus.CounterValue, float64(c.node.LeaderChanges()))
	gauge(descTerm, float64(st.Term))
	gauge(descCommit, float64(st.CommitIndex))
	gauge(descApplied, float64(st.AppliedIndex))
	gauge(descLastLog, float64(st.LastLogIndex))
	gauge(descSnapshot, float64(st.LastSnapshot.Index))
	suffrage := map[string]int{"voter": 0, "nonvoter": 0, "staging": 0}
	for _, m := range st.Members {
		suffrage[m.Suffrage.String()]++
		if m.ID == st.NodeID || m.LastContact.IsZero() {
			continue
		}
		gauge(descPeerContact, max(0, now.Sub(m.LastContact).Seconds()), m.ID)
	}
	for s, n := range suffrage {
		gauge(descMembers, float64(n), s)
	}
	stats := c.node.Store().Stats()
	for _, s := range stats.Servers {
		gauge(descMailboxes, float64(s.Active), "active", s.Server)
		gauge(descMailboxes, float64(s.Reserved), "reserved", s.Server)
	}
	gauge(descRevision, float64(st.Revision))
	age := 0.0
	if at, ok := c.oldestReserved(); ok {
		age = max(0, now.Sub(time.Unix(0, at)).Seconds())
	}
	gauge(descReservedAge, age)
	c.collectHealth(gauge)
}

// collectHealth exports the node's alarms and its last consistency check.
func (c *NodeCollector) collectHealth(gauge func(*prometheus.Desc, float64, ...string)) {
	active := map[string]bool{}
	refused := false
	for _, a := range c.node.Alarms() {
		active[a.Kind] = true
		refused = refused || a.BlocksReads
	}
	for _, k := range alarmKinds {
		gauge(descAlarm, boolValue(active[k]), k)
		delete(active, k)
	}
	for k := range active {
		gauge(descAlarm, 1, k)
	}
	gauge(descReadsRefused, boolValue(refused))
	if rep, ok := c.node.LastConsistencyCheck(); ok {
		gauge(descCheckTime, float64(rep.At.UnixNano())/1e9)
		gauge(descCheckOK, boolValue(rep.Consistent))
		gauge(descCheckDiverged, float64(len(rep.Diverged())))
	}
}

// oldestReserved returns when the oldest reservation was made. The
// directory indexes RESERVED entries (normally few: creates and moves in
// progress), so this costs the reservations, not a scan of every mailbox.
func (c *NodeCollector) oldestReserved() (int64, bool) {
	var oldest int64
	found := false
	c.node.Store().View().ScanReserved(func(e fsm.Entry) bool {
		if !found || e.ReservedAt < oldest {
			oldest, found = e.ReservedAt, true
		}
		return true
	})
	return oldest, found
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
