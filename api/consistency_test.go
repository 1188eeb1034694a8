package api_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

func TestDivergedNodeIsNotServingAndRefusesEveryRead(t *testing.T) {
	c := apitest.Start(t, apitest.Options{Cluster: func(_ int, cfg *cluster.Config) { cfg.ConsistencyCheckInterval = -1 }})
	ctx := testCtx(t)
	cl := newClient(t, c.Endpoints())
	activateN(t, cl, 0, 20)
	bad := c.Follower()
	store := c.Nodes[bad].Node().Store()
	store.Apply(store.AppliedIndex(), []fsm.Command{{Op: fsm.OpActivate, Name: "user.injected", Location: "evil!default"}})
	activateN(t, cl, 20, 21)

	// The check through any node's Cluster service finds it.
	leader := c.WaitLeader()
	rep, err := rookeryv1.NewClusterClient(conn(t, c.Nodes[leader].APIAddr)).CheckConsistency(ctx, &rookeryv1.CheckConsistencyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.GetConsistent() || len(rep.GetQuorumHash()) != 16 {
		t.Fatalf("report %v", rep)
	}
	for _, m := range rep.GetMembers() {
		want := cluster.VerdictMatch
		if m.GetId() == c.Nodes[bad].ID {
			want = cluster.VerdictDiverged
		}
		if m.GetVerdict() != want {
			t.Fatalf("member %v, want verdict %s", m, want)
		}
	}

	cc := conn(t, c.Nodes[bad].APIAddr)
	if resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health of the diverged node: %v %v", resp, err)
	}
	dir := rookeryv1.NewDirectoryClient(cc)
	for _, c := range []rookeryv1.Consistency{rookeryv1.Consistency_CONSISTENCY_LINEARIZABLE, rookeryv1.Consistency_CONSISTENCY_STALE} {
		if _, err := dir.Get(ctx, &rookeryv1.GetRequest{Name: mailboxName(1), Consistency: c}); status.Code(err) != codes.Unavailable {
			t.Fatalf("%v Get on the diverged node: %v", c, err)
		}
	}
	if _, err := dir.List(ctx, &rookeryv1.ListRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("List on the diverged node: %v", err)
	}
	w, err := dir.Watch(ctx, &rookeryv1.WatchRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Watch on the diverged node: %v", err)
	}
	st, err := rookeryv1.NewClusterClient(cc).Status(ctx, &rookeryv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.GetAlarms()) != 1 || st.GetAlarms()[0].GetKind() != cluster.AlarmDiverged || !st.GetAlarms()[0].GetBlocksReads() || st.GetLastConsistencyCheck() == nil {
		t.Fatalf("status of the diverged node: %v", st)
	}
	// A healthy node still serves.
	hc := conn(t, c.Nodes[leader].APIAddr)
	if resp, err := healthpb.NewHealthClient(hc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health of the leader: %v %v", resp, err)
	}
	if _, err := rookeryv1.NewDirectoryClient(hc).Get(ctx, &rookeryv1.GetRequest{Name: mailboxName(1)}); err != nil {
		t.Fatalf("Get on the leader: %v", err)
	}
}
