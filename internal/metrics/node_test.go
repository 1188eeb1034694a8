package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/fsm"
)

// storeNode serves a real fsm.Store with a fixed raft status: what the
// collector reads from a node, without raft, to time the store side.
type storeNode struct {
	store  *fsm.Store
	alarms []cluster.Alarm
}

func (n storeNode) Status() cluster.Status {
	return cluster.Status{NodeID: "n1", State: "Leader", Leader: cluster.Peer{ID: "n1"}, Revision: n.store.Revision()}
}
func (n storeNode) LeaderChanges() uint64   { return 1 }
func (n storeNode) Store() *fsm.Store       { return n.store }
func (n storeNode) Alarms() []cluster.Alarm { return n.alarms }
func (n storeNode) LastConsistencyCheck() (cluster.ConsistencyReport, bool) {
	return cluster.ConsistencyReport{}, false
}

// TestOldestReservationFollowsTheDirectory: reservations made, activated
// and deleted between scrapes are reflected, however short the history.
func TestOldestReservationFollowsTheDirectory(t *testing.T) {
	cfg := fsm.DefaultConfig()
	cfg.HistorySize = 3
	store := fsm.New(cfg)
	c := NewNodeCollector(storeNode{store: store})
	var idx uint64
	apply := func(cmds ...fsm.Command) {
		idx++
		store.Apply(idx, cmds)
	}
	oldest := c.oldestReserved
	reserve := func(name string, at int64) fsm.Command {
		return fsm.Command{Op: fsm.OpReserve, Name: name, Location: "be1!p", Time: at}
	}

	if _, ok := oldest(); ok {
		t.Fatal("empty directory has a reservation")
	}
	apply(reserve("user.a", 100), reserve("user.b", 200))
	if at, ok := oldest(); !ok || at != 100 {
		t.Fatalf("oldest %d %v, want 100", at, ok)
	}
	apply(fsm.Command{Op: fsm.OpActivate, Name: "user.a", Location: "be1!p", ACL: "a\tlrs\t", Time: 300})
	if at, ok := oldest(); !ok || at != 200 {
		t.Fatalf("after activating a: oldest %d %v, want 200", at, ok)
	}
	// Five changes overflow the three-event history.
	apply(fsm.Command{Op: fsm.OpDelete, Name: "user.b"}, reserve("user.c", 400),
		reserve("user.d", 500), reserve("user.e", 600), fsm.Command{Op: fsm.OpDelete, Name: "user.d"})
	if at, ok := oldest(); !ok || at != 400 {
		t.Fatalf("after compaction: oldest %d %v, want 400", at, ok)
	}
	apply(fsm.Command{Op: fsm.OpDelete, Name: "user.c"}, fsm.Command{Op: fsm.OpDelete, Name: "user.e"})
	if _, ok := oldest(); ok {
		t.Fatal("reservation left after every one was deleted")
	}
}

func TestAlarmsAreExported(t *testing.T) {
	node := storeNode{store: fsm.New(fsm.DefaultConfig()), alarms: []cluster.Alarm{
		{Kind: cluster.AlarmDiskLog, Message: "no space left on device"},
		{Kind: "future-kind", BlocksReads: true},
	}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewNodeCollector(node))
	got := map[string]float64{}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, m := range f.Metric {
			key := f.GetName()
			for _, l := range m.Label {
				key += "," + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"rookery_server_alarm,disk-log": 1, "rookery_server_alarm,future-kind": 1,
		"rookery_server_alarm,diverged": 0, "rookery_server_reads_refused": 1,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
	if _, ok := got["rookery_consistency_last_check_consistent"]; ok {
		t.Error("a consistency result is exported before any check ran")
	}
}
