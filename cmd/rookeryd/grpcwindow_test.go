package main

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/rookery/rookery/internal/h2watch"
)

// TestTheGRPCListenerSendsNoFlowControlPings: rookeryd's gRPC server runs
// with fixed flow-control windows (cluster.PeerServerOptions), so it does
// not answer each request with a bandwidth-probe PING. A follower's
// forwarded writes arrive here; gRPC's default cost each of them a PING and
// its acknowledgement, two extra wake-ups of both nodes.
func TestTheGRPCListenerSendsNoFlowControlPings(t *testing.T) {
	c := testConfig(t, t.TempDir())
	defer serveInBackground(t, c)()
	ctx := t.Context()
	var pings h2watch.Pings
	defer pings.Wait()
	cc, err := grpc.NewClient("passthrough:///"+c.GRPC.Listen,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(pings.Dial),
		// The client's own windows fixed too: only the server's PINGs count.
		grpc.WithStaticStreamWindowSize(1<<20), grpc.WithStaticConnWindowSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	health := healthpb.NewHealthClient(cc)
	check := func() error {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		_, err := health.Check(cctx, &healthpb.HealthCheckRequest{})
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for err := check(); err != nil; err = check() {
		if time.Now().After(deadline) {
			t.Fatalf("health check: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := pings.Received()
	const requests = 30
	for range requests {
		if err := check(); err != nil {
			t.Fatalf("health check: %v", err)
		}
	}
	if got := pings.Received() - before; got > 1 {
		t.Errorf("%d requests drew %d PINGs from the server, want none", requests, got)
	}
}
