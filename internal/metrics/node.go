package metrics

import (
	"sync"
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
}

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
)

// NodeCollector reads a node's status at scrape time.
type NodeCollector struct {
	node Node
	now  func() time.Time

	mu       sync.Mutex
	reserved reservations
}

// reservations tracks the RESERVED entries (normally few: creates and
// moves in progress) from the directory's change history, so finding the
// oldest costs the changes since the last scrape, not a scan of millions
// of entries. A full scan happens only when the tracking has no base yet
// or the history it needs was compacted.
type reservations struct {
	valid bool
	rev   uint64           // every change up to rev is accounted for
	at    map[string]int64 // name -> ReservedAt (unix ns)
}

// NewNodeCollector returns a collector for node; register it once.
func NewNodeCollector(node Node) *NodeCollector {
	return &NodeCollector{node: node, now: time.Now}
}

// Describe implements prometheus.Collector.
func (c *NodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHasLeader, descIsLeader, descLeaderChanges, descTerm, descCommit,
		descApplied, descLastLog, descSnapshot, descPeerContact, descMembers, descMailboxes, descRevision, descReservedAge} {
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
	if at, ok := c.oldestReserved(stats.Reserved); ok {
		age = max(0, now.Sub(time.Unix(0, at)).Seconds())
	}
	gauge(descReservedAge, age)
}

// oldestReserved returns when the oldest reservation was made.
func (c *NodeCollector) oldestReserved(count uint64) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := &c.reserved
	store := c.node.Store()
	if count == 0 {
		// Nothing reserved: a fresh, empty base, without a scan.
		*r = reservations{valid: true, rev: store.Revision(), at: map[string]int64{}}
		return 0, false
	}
	if !r.valid || !r.catchUp(store) {
		r.scan(store.View())
	}
	var oldest int64
	found := false
	for _, at := range r.at {
		if !found || at < oldest {
			oldest, found = at, true
		}
	}
	return oldest, found
}

// catchUp applies the changes since r.rev; false when they were compacted.
func (r *reservations) catchUp(store *fsm.Store) bool {
	for {
		evs, err := store.EventsSince(r.rev, 4096)
		if err != nil {
			return false
		}
		if len(evs) == 0 {
			return true
		}
		for _, ev := range evs {
			if ev.Type == fsm.EventPut && ev.Entry.State == fsm.StateReserved {
				r.at[ev.Entry.Name] = ev.Entry.ReservedAt
			} else {
				delete(r.at, ev.Entry.Name)
			}
			r.rev = ev.Revision
		}
	}
}

// scan rebuilds the set from a full view of the directory.
func (r *reservations) scan(view *fsm.View) {
	*r = reservations{valid: true, rev: view.Revision(), at: map[string]int64{}}
	view.ScanName("", func(e fsm.Entry) bool {
		if e.State == fsm.StateReserved {
			r.at[e.Name] = e.ReservedAt
		}
		return true
	})
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
