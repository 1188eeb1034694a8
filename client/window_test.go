package client_test

import (
	"testing"

	"google.golang.org/grpc"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/internal/h2watch"
)

// TestCallsCostNoFlowControlPings: the client runs with fixed flow-control
// windows, so it does not answer each response with a bandwidth-probe PING
// the node must wake up to acknowledge; nor does rookeryd's server (as
// apitest serves it) answer each request with one.
func TestCallsCostNoFlowControlPings(t *testing.T) {
	var pings h2watch.Pings
	t.Cleanup(pings.Wait)
	c := apitest.Start(t, apitest.Options{Nodes: 1})
	c.WaitLeader()
	cfg := client.DefaultConfig()
	cfg.Logger = apitest.Logger(t)
	cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(pings.Dial)}
	cl, err := client.Dial(c.Endpoints(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	activateN(t, cl, 0, 1)
	sent, received := pings.Sent(), pings.Received()
	const calls = 30
	activateN(t, cl, 1, 1+calls)
	if s, r := pings.Sent()-sent, pings.Received()-received; s > 1 || r > 1 {
		t.Errorf("%d calls cost %d PINGs from the client and %d from the node, want none", calls, s, r)
	}
}
