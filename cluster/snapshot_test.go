package cluster

import (
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
)

// bulkLoad activates mailboxes [from, to) in entries of batch commands.
func bulkLoad(t testing.TB, n *Node, from, to, batch int) {
	t.Helper()
	cmds := make([]fsm.Command, 0, batch)
	for i := from; i < to; i++ {
		cmds = append(cmds, activate(i))
		if len(cmds) == batch || i == to-1 {
			res, err := n.Apply(testCtx(t), cmds)
			if err != nil {
				t.Fatalf("bulk load at %d: %v", i, err)
			}
			for _, r := range res {
				if r.Code != fsm.CodeOK {
					t.Fatalf("bulk load at %d: %+v", i, r)
				}
			}
			cmds = cmds[:0]
		}
	}
}

func TestJoinerCatchesUpByInstallingSnapshotOf100kMailboxes(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 100k mailboxes")
	}
	const mailboxes = 100_000
	c := newTestCluster(t, 3, func(cfg *Config) {
		// Keep almost no log behind a snapshot, so a new member cannot be
		// caught up by replaying entries.
		cfg.TrailingLogs = 10
		cfg.SnapshotThreshold = 1 << 30 // only explicit snapshots
		cfg.SnapshotInterval = time.Hour
	})
	l := c.leader()
	start := time.Now()
	bulkLoad(t, c.followers()[0].node, 0, mailboxes, 1000)
	t.Logf("bulk-loaded %d mailboxes in %v", mailboxes, time.Since(start))
	for _, tn := range c.running() {
		if err := tn.node.TakeSnapshot(testCtx(t)); err != nil {
			t.Fatalf("snapshot on %s: %v", tn.cfg.NodeID, err)
		}
	}
	snap := l.node.Status().LastSnapshot
	if snap.Index == 0 || snap.Size == 0 {
		t.Fatalf("leader snapshot %+v", snap)
	}
	first, err := l.node.storage.logs.FirstIndex()
	if err != nil || first <= 1 {
		t.Fatalf("leader log not compacted: first index %d, %v", first, err)
	}
	// A few writes after the snapshot: the joiner gets them from the log.
	bulkLoad(t, l.node, mailboxes, mailboxes+5, 5)

	cfg := testConfig(t, "n4")
	cfg.TrailingLogs = 10
	cfg.Join = []string{c.followers()[1].cfg.APIAddr}
	start = time.Now()
	j := startNode(t, cfg)
	c.nodes = append(c.nodes, j)
	if err := j.node.LinearizableRead(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Logf("joiner caught up in %v", time.Since(start))

	// It was caught up by a snapshot: raft stored the installed one.
	if js := j.node.Status().LastSnapshot; js.Index < snap.Index {
		t.Fatalf("joiner's snapshot %+v, want one at index >= %d (installed from the leader)", js, snap.Index)
	}
	// Its store equals the leader's, entry for entry.
	if err := l.node.LinearizableRead(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	assertSameStore(t, l.node.Store(), j.node.Store())
	if got := j.node.Store().View().Len(); got != mailboxes+5 {
		t.Fatalf("joiner has %d mailboxes, want %d", got, mailboxes+5)
	}
}

// assertSameStore compares two stores entry by entry, in name order.
func assertSameStore(t testing.TB, a, b *fsm.Store) {
	t.Helper()
	va, vb := a.View(), b.View()
	if va.Revision() != vb.Revision() || va.Len() != vb.Len() {
		t.Fatalf("stores differ: revision %d/%d, len %d/%d", va.Revision(), vb.Revision(), va.Len(), vb.Len())
	}
	var ea []fsm.Entry
	va.ScanName("", func(e fsm.Entry) bool { ea = append(ea, e); return true })
	i := 0
	vb.ScanName("", func(e fsm.Entry) bool {
		if i >= len(ea) || ea[i] != e {
			t.Fatalf("entry %d differs: %+v vs %+v", i, e, ea[min(i, len(ea)-1)])
		}
		i++
		return true
	})
	if i != len(ea) {
		t.Fatalf("%d entries vs %d", i, len(ea))
	}
	pa, pb := a.Peers(), b.Peers()
	if len(pa) != len(pb) {
		t.Fatalf("peer maps differ: %v vs %v", pa, pb)
	}
	for k, v := range pa {
		if pb[k] != v {
			t.Fatalf("peer maps differ: %v vs %v", pa, pb)
		}
	}
}
