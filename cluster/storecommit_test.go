package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

func TestStoreCommitIndexFollowsRaftsCommitRule(t *testing.T) {
	voters := func(ids ...raft.ServerID) []raft.Server {
		var s []raft.Server
		for _, id := range ids {
			s = append(s, raft.Server{ID: id, Suffrage: raft.Voter})
		}
		return s
	}
	three := voters("a", "b", "c")
	withNonvoter := append(voters("a", "c"), raft.Server{ID: "b", Suffrage: raft.Nonvoter})
	entries := func(term uint64, idx ...uint64) []*raft.Log {
		var l []*raft.Log
		for _, i := range idx {
			l = append(l, &raft.Log{Index: i, Term: term, Type: raft.LogCommand})
		}
		return l
	}
	cases := []struct {
		name    string
		req     raft.AppendEntriesRequest
		servers []raft.Server
		want    uint64
	}{
		{"entries of the term, three voters", raft.AppendEntriesRequest{Term: 5, LeaderCommitIndex: 9, Entries: entries(5, 10, 11)}, three, 11},
		{"two voters", raft.AppendEntriesRequest{Term: 5, LeaderCommitIndex: 9, Entries: entries(5, 10)}, voters("a", "b"), 10},
		{"five voters need two followers", raft.AppendEntriesRequest{Term: 5, LeaderCommitIndex: 9, Entries: entries(5, 10)}, voters("a", "b", "c", "d", "e"), 9},
		{"four voters need two followers", raft.AppendEntriesRequest{Term: 5, LeaderCommitIndex: 9, Entries: entries(5, 10)}, voters("a", "b", "c", "d"), 9},
		{"target not a voter", raft.AppendEntriesRequest{Term: 5, LeaderCommitIndex: 9, Entries: entries(5, 10)}, withNonvoter, 9},
		{"leader not in the configuration", raft.AppendEntriesRequest{Term: 5, LeaderCommitIndex: 9, Entries: entries(5, 10)}, voters("b", "c"), 9},
		{"no configuration known", raft.AppendEntriesRequest{Term: 5, LeaderCommitIndex: 9, Entries: entries(5, 10)}, nil, 9},
		{"older terms' entries do not count", raft.AppendEntriesRequest{Term: 6, LeaderCommitIndex: 9, Entries: entries(5, 10, 11)}, three, 9},
		{"up to the last entry of the term", raft.AppendEntriesRequest{Term: 6, LeaderCommitIndex: 9, Entries: append(entries(5, 10), entries(6, 11, 12)...)}, three, 12},
		{"heartbeat", raft.AppendEntriesRequest{Term: 5, LeaderCommitIndex: 9}, three, 9},
		{"configuration entry left to raft", raft.AppendEntriesRequest{Term: 5, LeaderCommitIndex: 9, Entries: append(entries(5, 10), &raft.Log{Index: 11, Term: 5, Type: raft.LogConfiguration})}, three, 9},
		{"never lowers the commit index", raft.AppendEntriesRequest{Term: 5, LeaderCommitIndex: 20, Entries: entries(5, 10)}, three, 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := storeCommitIndex(&tc.req, tc.servers, "a", "b"); got != tc.want {
				t.Fatalf("commit index %d, want %d", got, tc.want)
			}
		})
	}
}

// heldCluster is a three-node cluster whose leader sends new entries to
// one follower (near) and hears nothing back from it until release closes,
// and sends nothing with entries to the other (far) until then: near has
// stored and been told everything it can be, and the leader cannot commit.
type heldCluster struct {
	leader, near, far *testNode
	release           chan struct{}
}

func holdCommits(t *testing.T, mode string, tweak func(*Config)) *heldCluster {
	t.Helper()
	c, fts := leaseCluster(t, mode, nil, func(cfg *Config) {
		cfg.PersistBeforeReplicate = true // raft's own AppendEntries carries every entry
		cfg.CommitPushDelay = -1
		if tweak != nil {
			tweak(cfg)
		}
	})
	h := &heldCluster{leader: c.stableLeader(), release: make(chan struct{})}
	fs := c.followers()
	h.near, h.far = fs[0], fs[1]
	mustApply(t, h.leader.node, activate(0))
	waitApplied(t, h.near.node, h.leader.node.raft.CommitIndex())
	if mode == ReadLease {
		waitLease(t, h.leader.node)
	}
	fts[h.leader.cfg.NodeID].setRule(func(to raft.ServerID, req any) fault {
		ae, ok := req.(*raft.AppendEntriesRequest)
		switch {
		case !ok || len(ae.Entries) == 0:
			return fault{}
		case string(to) == h.near.cfg.NodeID:
			return fault{holdReply: h.release}
		default:
			return fault{hold: h.release}
		}
	})
	t.Cleanup(h.let)
	return h
}

// let ends the hold (once).
func (h *heldCluster) let() {
	select {
	case <-h.release:
	default:
		close(h.release)
	}
}

func waitApplied(t *testing.T, n *Node, index uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(t), 5*time.Second)
	defer cancel()
	if err := n.WaitApplied(ctx, index); err != nil {
		t.Fatalf("%s never applied %d: %v", n.ID(), index, err)
	}
}

// writeOnLeader starts a write of activate(i) on the leader and returns
// where its error will arrive.
func (h *heldCluster) writeOnLeader(t *testing.T, i int) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := h.leader.node.Apply(testCtx(t), []fsm.Command{activate(i)})
		done <- err
	}()
	return done
}

// nearApplies reports whether near applies activate(i) within d.
func (h *heldCluster) nearApplies(i int, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if _, ok := h.near.node.Store().Get(mailboxName(i)); ok {
			return true
		}
	}
	return false
}

func TestAFollowerAppliesAnEntryOnceItHasStoredIt(t *testing.T) {
	cases := []struct {
		name        string
		leaderOnly  bool
		wantApplied bool
	}{
		{"commit on store", false, true},
		{"CommitAtLeaderOnly", true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := holdCommits(t, ReadLinearizable, func(cfg *Config) { cfg.CommitAtLeaderOnly = tc.leaderOnly })
			before := h.leader.node.raft.CommitIndex()
			done := h.writeOnLeader(t, 1)
			if applied := h.nearApplies(1, 2*time.Second); applied != tc.wantApplied {
				t.Fatalf("%s applied the entry before the leader heard back: %v, want %v", h.near.cfg.NodeID, applied, tc.wantApplied)
			}
			if got := h.leader.node.raft.CommitIndex(); got != before {
				t.Fatalf("the leader's commit index moved %d → %d while every acknowledgement was held: the test proves nothing", before, got)
			}
			h.let()
			if err := <-done; err != nil {
				t.Fatalf("write once the hold ended: %v", err)
			}
		})
	}
}

// A follower may apply an entry, and answer a write forwarded through it,
// before the leader counts it committed; a linearizable read that begins
// after that on any node must see it, with a heartbeat round or a lease.
func TestALeaderReadWaitsForEntriesAFollowerMayHaveApplied(t *testing.T) {
	for _, mode := range []string{ReadLinearizable, ReadLease} {
		t.Run(mode, func(t *testing.T) {
			h := holdCommits(t, mode, nil)
			done := h.writeOnLeader(t, 1)
			if !h.nearApplies(1, 5*time.Second) {
				t.Fatalf("%s did not apply the held entry", h.near.cfg.NodeID)
			}
			time.AfterFunc(100*time.Millisecond, h.let)
			for _, r := range []*testNode{h.leader, h.far} {
				e, found, err := r.node.LinearizableGet(testCtx(t), mailboxName(1))
				if err != nil || !found || e.State != fsm.StateActive {
					t.Fatalf("read on %s after %s applied the write: %+v found=%v err=%v", r.cfg.NodeID, h.near.cfg.NodeID, e, found, err)
				}
			}
			if err := <-done; err != nil {
				t.Fatalf("write: %v", err)
			}
		})
	}
}
