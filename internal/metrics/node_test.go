package metrics

import (
	"testing"

	"github.com/rookery/rookery/fsm"
)

// TestOldestReservationFollowsTheHistory: reservations made, activated
// and deleted between scrapes are tracked from the change history, and a
// history compacted under the tracker falls back to a scan.
func TestOldestReservationFollowsTheHistory(t *testing.T) {
	cfg := fsm.DefaultConfig()
	cfg.HistorySize = 3
	store := fsm.New(cfg)
	c := NewNodeCollector(storeNode{store})
	var idx uint64
	apply := func(cmds ...fsm.Command) {
		idx++
		store.Apply(idx, cmds)
	}
	oldest := func() (int64, bool) { return c.oldestReserved(store.Stats().Reserved) }
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
	// Five changes overflow the three-event history: a rescan finds c.
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
