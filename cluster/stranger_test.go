package cluster

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// TestStrangerRaftRPCsAreRefused replays issue 9's attack: a program with
// hashicorp/raft's own TCP transport and no credentials sends every node an
// AppendEntries from a "leader" of a higher term that carries a directory
// write, and a RequestVote of a higher term. Each RPC must fail without an
// answer, and no node may change: no injected mailbox, no new term, no new
// log entry.
func TestStrangerRaftRPCsAreRefused(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	mustApply(t, l.node, activate(1))
	for _, tn := range c.nodes {
		if err := tn.node.LinearizableRead(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}

	stranger, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()

	type state struct{ term, last uint64 }
	before := map[string]state{}
	for _, tn := range c.nodes {
		before[tn.cfg.NodeID] = state{tn.node.raft.CurrentTerm(), tn.node.raft.LastIndex()}
	}
	injected := fsm.Command{Op: fsm.OpActivate, Name: "user.injected", Location: "evil!default", ACL: "anyone\tlrswipkxtecdan\t", Identity: "stranger"}
	for _, tn := range c.nodes {
		st := before[tn.cfg.NodeID]
		target := raft.ServerAddress(tn.cfg.RaftAddr)
		var last raft.Log
		if err := tn.node.storage.logs.GetLog(st.last, &last); err != nil {
			t.Fatal(err)
		}
		ae := &raft.AppendEntriesRequest{
			RPCHeader:         raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("stranger"), Addr: []byte(stranger.LocalAddr())},
			Term:              st.term + 1,
			PrevLogEntry:      last.Index,
			PrevLogTerm:       last.Term,
			Entries:           []*raft.Log{{Index: last.Index + 1, Term: st.term + 1, Type: raft.LogCommand, Data: fsm.EncodeCommands([]fsm.Command{injected})}},
			LeaderCommitIndex: last.Index + 1,
		}
		var aeResp raft.AppendEntriesResponse
		if err := stranger.AppendEntries("stranger", target, ae, &aeResp); answered(err) {
			t.Errorf("%s answered a stranger's AppendEntries: err=%v success=%v term=%d", tn.cfg.NodeID, err, aeResp.Success, aeResp.Term)
		}
		rv := &raft.RequestVoteRequest{
			RPCHeader:    raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("stranger"), Addr: []byte(stranger.LocalAddr())},
			Term:         st.term + 10,
			LastLogIndex: last.Index + 100,
			LastLogTerm:  st.term + 10,
		}
		var rvResp raft.RequestVoteResponse
		if err := stranger.RequestVote("stranger", target, rv, &rvResp); answered(err) {
			t.Errorf("%s answered a stranger's RequestVote: err=%v granted=%v term=%d", tn.cfg.NodeID, err, rvResp.Granted, rvResp.Term)
		}
	}

	time.Sleep(300 * time.Millisecond) // anything accepted would be applied by now
	for _, tn := range c.nodes {
		id := tn.cfg.NodeID
		if _, ok := tn.node.Store().Get("user.injected"); ok {
			t.Errorf("%s applied the stranger's write", id)
		}
		if term := tn.node.raft.CurrentTerm(); term != before[id].term {
			t.Errorf("%s moved from term %d to %d", id, before[id].term, term)
		}
		if n := tn.node.RaftRefusedConnections(); n == 0 {
			t.Errorf("%s counted no refused raft connection", id)
		}
	}
	// The cluster itself still works.
	mustApply(t, c.leader().node, activate(2))
}

// answered tells a reply from the node (a response, or an error string it
// sent back) from a connection that was closed or never answered. raft's
// msgpack decoder flattens transport errors into its own message, so the
// transport failures are recognised by their text too.
func answered(err error) bool {
	if err == nil {
		return true
	}
	var ne net.Error
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.As(err, &ne) {
		return false
	}
	for _, s := range []string{"EOF", "connection reset by peer", "broken pipe", "i/o timeout"} {
		if strings.Contains(err.Error(), s) {
			return false
		}
	}
	return true
}
