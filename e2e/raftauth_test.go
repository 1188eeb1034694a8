package e2e

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/testcluster"
)

// TestStrangerRaftRPCsToRookerydGetNoAnswer is issue 9's attack against
// real rookeryd processes started as `make run` starts them (cluster
// secret, no raft TLS): a program with hashicorp/raft's TCP transport sends
// every node an AppendEntries carrying a directory write and a RequestVote
// of a higher term. No node answers, none changes term or applies the
// write, and each logs the refusal with the stranger's address.
func TestStrangerRaftRPCsToRookerydGetNoAnswer(t *testing.T) {
	rc := testcluster.Start(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rc.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	stranger, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()

	terms := make([]uint64, len(rc.Nodes))
	for i, n := range rc.Nodes {
		st, err := rc.NodeClient(i).StatusOf(ctx, n.GRPCAddr)
		if err != nil {
			t.Fatal(err)
		}
		terms[i] = st.GetTerm()
		hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("stranger"), Addr: []byte(stranger.LocalAddr())}
		write := fsm.EncodeCommands([]fsm.Command{{Op: fsm.OpActivate, Name: "user.injected", Location: "evil!default", ACL: "anyone\tlrswipkxtecdan\t"}})
		ae := &raft.AppendEntriesRequest{
			RPCHeader: hdr, Term: st.GetTerm() + 1, PrevLogEntry: st.GetCommitIndex(), PrevLogTerm: st.GetTerm(),
			Entries:           []*raft.Log{{Index: st.GetCommitIndex() + 1, Term: st.GetTerm() + 1, Type: raft.LogCommand, Data: write}},
			LeaderCommitIndex: st.GetCommitIndex() + 1,
		}
		var aeResp raft.AppendEntriesResponse
		if err := stranger.AppendEntries("stranger", raft.ServerAddress(n.RaftAddr), ae, &aeResp); err == nil {
			t.Errorf("%s answered a stranger's AppendEntries: success=%v term=%d", n.ID, aeResp.Success, aeResp.Term)
		}
		rv := &raft.RequestVoteRequest{RPCHeader: hdr, Term: st.GetTerm() + 10, LastLogIndex: st.GetCommitIndex() + 100, LastLogTerm: st.GetTerm() + 10}
		var rvResp raft.RequestVoteResponse
		if err := stranger.RequestVote("stranger", raft.ServerAddress(n.RaftAddr), rv, &rvResp); err == nil {
			t.Errorf("%s answered a stranger's RequestVote: granted=%v term=%d", n.ID, rvResp.Granted, rvResp.Term)
		}
	}
	time.Sleep(500 * time.Millisecond)
	for i, n := range rc.Nodes {
		st, err := rc.NodeClient(i).StatusOf(ctx, n.GRPCAddr)
		if err != nil {
			t.Fatal(err)
		}
		if st.GetTerm() != terms[i] {
			t.Errorf("%s moved from term %d to %d", n.ID, terms[i], st.GetTerm())
		}
		if _, _, err := rc.NodeClient(i).Get(ctx, "user.injected", true); err == nil {
			t.Errorf("%s holds the stranger's mailbox", n.ID)
		}
		if log := rc.Log(i); !strings.Contains(log, "raft connection refused") {
			t.Errorf("%s did not log the refusal", n.ID)
		}
	}
}
