package api_test

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/api"
	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

func TestStatusReportsRaftStateAndMailboxCounts(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	cl := newClient(t, c.Endpoints())
	last := activateN(t, cl, 0, 12)
	ctx := testCtx(t)
	if _, err := cl.Reserve(ctx, "user.pending", "imap-be01!default"); err != nil {
		t.Fatal(err)
	}
	last++
	leader := c.WaitLeader()
	for i, n := range c.Nodes {
		cc := rookeryv1.NewClusterClient(conn(t, n.APIAddr))
		if _, err := rookeryv1.NewDirectoryClient(conn(t, n.APIAddr)).WaitRevision(ctx, &rookeryv1.WaitRevisionRequest{Revision: last}); err != nil {
			t.Fatal(err)
		}
		st, err := cc.Status(ctx, &rookeryv1.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		wantState := "Follower"
		if i == leader {
			wantState = "Leader"
		}
		if st.GetNodeId() != n.ID || st.GetState() != wantState || st.GetLeaderId() != c.Nodes[leader].ID || st.GetLeaderAddress() != c.Nodes[leader].APIAddr {
			t.Fatalf("%s status: %v", n.ID, st)
		}
		if st.GetRevision() != last || st.GetAppliedIndex() < last || st.GetCommitIndex() < last || st.GetTerm() == 0 {
			t.Fatalf("%s indexes: revision %d applied %d commit %d term %d, want revision %d", n.ID, st.GetRevision(), st.GetAppliedIndex(), st.GetCommitIndex(), st.GetTerm(), last)
		}
		if st.GetMailboxesActive() != 12 || st.GetMailboxesReserved() != 1 || len(st.GetMembers()) != 3 {
			t.Fatalf("%s counts: %d active %d reserved %d members", n.ID, st.GetMailboxesActive(), st.GetMailboxesReserved(), len(st.GetMembers()))
		}
		want := []*rookeryv1.ServerCount{
			{Server: "imap-be00", Active: 3}, {Server: "imap-be01", Active: 3, Reserved: 1},
			{Server: "imap-be02", Active: 3}, {Server: "imap-be03", Active: 3},
		}
		if got := st.GetServers(); !slices.EqualFunc(got, want, func(a, b *rookeryv1.ServerCount) bool {
			return a.GetServer() == b.GetServer() && a.GetActive() == b.GetActive() && a.GetReserved() == b.GetReserved()
		}) {
			t.Fatalf("%s per-server counts: %v", n.ID, got)
		}
	}
}

func TestMembershipChangesAndLeadershipTransferThroughTheAPI(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	ctx := testCtx(t)
	leader := c.WaitLeader()
	follower := c.Follower()
	onFollower := rookeryv1.NewClusterClient(conn(t, c.Nodes[follower].APIAddr))
	onLeader := rookeryv1.NewClusterClient(conn(t, c.Nodes[leader].APIAddr))

	// A non-voter can be added through a follower (the node forwards it).
	if _, err := onFollower.AddNonvoter(ctx, &rookeryv1.AddMemberRequest{Id: "n4", RaftAddress: "127.0.0.1:1", ApiAddress: "127.0.0.1:2"}); err != nil {
		t.Fatalf("add nonvoter through a follower: %v", err)
	}
	ms, err := onLeader.Members(ctx, &rookeryv1.MembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ms.GetMembers(), func(m *rookeryv1.Member) bool { return m.GetId() == "n4" })
	if i < 0 || ms.GetMembers()[i].GetSuffrage() != rookeryv1.Suffrage_SUFFRAGE_NONVOTER {
		t.Fatalf("members after add: %v", ms.GetMembers())
	}
	// Removal runs on the leader; a follower names it.
	_, err = onFollower.RemoveServer(ctx, &rookeryv1.RemoveServerRequest{Id: "n4"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), c.Nodes[leader].APIAddr) {
		t.Fatalf("remove through a follower: %v, want FailedPrecondition naming the leader", err)
	}
	if _, err := onLeader.RemoveServer(ctx, &rookeryv1.RemoveServerRequest{Id: "n4"}); err != nil {
		t.Fatalf("remove on the leader: %v", err)
	}
	ms, _ = onLeader.Members(ctx, &rookeryv1.MembersRequest{})
	if len(ms.GetMembers()) != 3 {
		t.Fatalf("members after remove: %v", ms.GetMembers())
	}
	for _, tc := range []struct {
		req  *rookeryv1.AddMemberRequest
		want string
	}{
		{&rookeryv1.AddMemberRequest{RaftAddress: "127.0.0.1:1", ApiAddress: "127.0.0.1:2"}, "id"},
		{&rookeryv1.AddMemberRequest{Id: "n5", ApiAddress: "127.0.0.1:2"}, "raft_address"},
		{&rookeryv1.AddMemberRequest{Id: "n5", RaftAddress: "127.0.0.1:1"}, "api_address"},
	} {
		if _, err := onLeader.AddVoter(ctx, tc.req); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("add voter %v: %v, want InvalidArgument naming %s", tc.req, err, tc.want)
		}
	}
	target := c.Nodes[follower].ID
	resp, err := onLeader.TransferLeadership(ctx, &rookeryv1.TransferLeadershipRequest{Id: target})
	if err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	if resp.GetLeaderId() != target || c.Nodes[c.WaitLeader()].ID != target {
		t.Fatalf("leader after transfer: %q, want %s", resp.GetLeaderId(), target)
	}
}

func TestSnapshotStreamsTheStoreAtOneRevision(t *testing.T) {
	// Small chunks, so that the stream has many.
	c := apitest.Start(t, apitest.Options{API: func(int) api.Config {
		cfg := api.DefaultConfig()
		cfg.SnapshotChunkSize = 512
		return cfg
	}})
	cl := newClient(t, c.Endpoints())
	activateN(t, cl, 0, 100)
	ctx := testCtx(t)
	node := c.Nodes[c.Follower()]
	cc := rookeryv1.NewClusterClient(conn(t, node.APIAddr))
	if _, err := rookeryv1.NewDirectoryClient(conn(t, node.APIAddr)).WaitRevision(ctx, &rookeryv1.WaitRevisionRequest{Revision: 100}); err != nil {
		t.Fatal(err)
	}
	want := node.Node().Store().View()
	st, err := cc.Snapshot(ctx, &rookeryv1.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	var rev uint64
	chunks := 0
	for {
		ch, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if chunks == 0 {
			rev = ch.GetRevision()
		} else if ch.GetRevision() != 0 {
			t.Fatalf("chunk %d carries revision %d; only the first does", chunks, ch.GetRevision())
		}
		chunks++
		buf.Write(ch.GetData())
	}
	if chunks < 4 {
		t.Fatalf("%d chunks of at most 512 bytes for %d bytes", chunks, buf.Len())
	}
	restored := fsm.New(fsm.DefaultConfig())
	if err := restored.Restore(&buf); err != nil {
		t.Fatalf("restore the streamed snapshot: %v", err)
	}
	if rev != want.Revision() || restored.Revision() != rev {
		t.Fatalf("snapshot revision %d, restored %d, node at %d", rev, restored.Revision(), want.Revision())
	}
	var got, exp []fsm.Entry
	restored.View().ScanName("", func(e fsm.Entry) bool { got = append(got, e); return true })
	want.ScanName("", func(e fsm.Entry) bool { exp = append(exp, e); return true })
	if !slices.Equal(got, exp) {
		t.Fatalf("restored snapshot has %d entries, node %d (or they differ)", len(got), len(exp))
	}
}

func TestHealthFollowsLeaderKnowledgeAndReflectionListsServices(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	ctx := testCtx(t)
	cc := conn(t, c.Nodes[2].APIAddr)
	h := healthpb.NewHealthClient(cc)
	for _, svc := range []string{"", "rookery.v1.Directory", "rookery.v1.Cluster"} {
		resp, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v %v", svc, resp, err)
		}
	}
	if _, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("health of an unknown service: %v", err)
	}
	// Reflection (what grpcurl uses) lists the services.
	rs, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range r.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"rookery.v1.Directory", "rookery.v1.Cluster", "rookery.v1.Peer", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Fatalf("reflection lists %v, missing %s", names, want)
		}
	}
	// Without a quorum the lone node loses its leader and says so.
	c.Stop(0)
	c.Stop(1)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health without quorum: %v %v, want NOT_SERVING", resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
