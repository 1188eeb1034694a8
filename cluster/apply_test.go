package cluster

import (
	"fmt"
	"testing"

	"github.com/rookery/rookery/fsm"
)

func TestWriteThroughFollowerIsAppliedOnEveryNode(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	f := c.followers()[0]

	res := mustApply(t, f.node, reserve("user.alice", "imap-be01!default"))
	if res[0].Code != fsm.CodeOK || res[0].Revision == 0 {
		t.Fatalf("reserve through follower: %+v", res[0])
	}
	// Apply returned: the follower itself must already see the write.
	e, ok := f.node.Store().Get("user.alice")
	if !ok || e.State != fsm.StateReserved || e.Location != "imap-be01!default" {
		t.Fatalf("follower store right after Apply: %+v, %v", e, ok)
	}
	if e.ReservedAt == 0 {
		t.Fatalf("leader did not stamp the command time: %+v", e)
	}
	for _, tn := range c.running() {
		if err := tn.node.WaitApplied(testCtx(t), f.node.Status().AppliedIndex); err != nil {
			t.Fatal(err)
		}
		got, ok := tn.node.Store().Get("user.alice")
		if !ok || got != e {
			t.Fatalf("%s: entry %+v, %v; want %+v (identical on every node)", tn.cfg.NodeID, got, ok, e)
		}
	}
}

func TestFollowerRelaysLeaderResults(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	fs := c.followers()
	mustApply(t, fs[0].node, reserve("user.bob", "imap-be01!default"))

	tests := []struct {
		name string
		cmd  fsm.Command
		want fsm.Code
	}{
		{"reserve held elsewhere", reserve("user.bob", "imap-be02!default"), fsm.CodeExists},
		{"deactivate reserved", fsm.Command{Op: fsm.OpDeactivate, Name: "user.bob", Location: "imap-be01!default"}, fsm.CodeNotActive},
		{"delete missing", fsm.Command{Op: fsm.OpDelete, Name: "user.nobody"}, fsm.CodeNotFound},
		{"activate", fsm.Command{Op: fsm.OpActivate, Name: "user.bob", Location: "imap-be01!default", ACL: "bob\tlrswipkxtecdan\t"}, fsm.CodeOK},
		{"invalid name", fsm.Command{Op: fsm.OpActivate, Name: "user.bad\r\nname", Location: "imap-be01!default"}, fsm.CodeInvalid},
		{"peer map is reserved to the cluster", fsm.Command{Op: fsm.OpSetPeer, Name: "n9", Location: "127.0.0.1:1"}, fsm.CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustApply(t, fs[1].node, tt.cmd)
			if res[0].Code != tt.want {
				t.Fatalf("code %v (%s), want %v", res[0].Code, res[0].Code, tt.want)
			}
		})
	}
	if _, ok := fs[1].node.Store().Peers()["n9"]; ok {
		t.Fatal("OpSetPeer from a client reached the peer map")
	}
}

func TestMixedBatchKeepsOrderAndSkipsInvalid(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	f := c.followers()[0]
	res := mustApply(t, f.node,
		reserve("user.carol", "imap-be01!default"),
		fsm.Command{Op: fsm.OpReserve, Name: "", Location: "imap-be01!default"},
		reserve("user.carol", "imap-be02!default"),
	)
	want := []fsm.Code{fsm.CodeOK, fsm.CodeInvalid, fsm.CodeExists}
	for i, r := range res {
		if r.Code != want[i] {
			t.Fatalf("result %d: %v, want %v (all: %+v)", i, r.Code, want[i], res)
		}
	}
}

// TestApplyCommittedThroughFollowerIsVisibleAfterABarrier proves the
// no-wait write path MUPDATE uses: the follower answers as soon as the
// leader has applied the entry, and a linearizable read on the follower
// then sees it.
func TestApplyCommittedThroughFollowerIsVisibleAfterABarrier(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	f := c.followers()[0]
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("user.u%02d", i)
		res, err := f.node.ApplyCommitted(testCtx(t), []fsm.Command{reserve(name, "imap-be01!default")})
		if err != nil || res[0].Code != fsm.CodeOK || res[0].Revision == 0 {
			t.Fatalf("ApplyCommitted %s: %+v, %v", name, res, err)
		}
		if err := f.node.LinearizableRead(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if e, ok := f.node.Store().Get(name); !ok || e.ModRevision != res[0].Revision {
			t.Fatalf("%s after the barrier: %+v, %v; want revision %d", name, e, ok, res[0].Revision)
		}
	}
}
