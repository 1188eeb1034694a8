package client_test

import (
	"testing"
	"time"

	"github.com/rookery/rookery/api/apitest"
)

// A node that comes back while the client's connection to it is in
// reconnect backoff (it failed calls while the node was down) serves the
// next call: the client resets the backoff and tries again before calling
// the cluster unavailable.
func TestClientReachesANodeRestartedDuringItsReconnectBackoff(t *testing.T) {
	c := apitest.Start(t, apitest.Options{Nodes: 1})
	c.WaitLeader()
	cl := newClient(t, c.Endpoints())
	activateN(t, cl, 0, 1)

	c.Stop(0)
	if _, err := cl.Activate(testCtx(t), mailboxName(1), location(1), acl(1)); err == nil {
		t.Fatal("a write succeeded with the only node stopped")
	}
	// Down long enough for the reconnect backoff to reach its maximum.
	time.Sleep(2500 * time.Millisecond)
	c.Restart(0)
	c.WaitLeader()
	activateN(t, cl, 2, 3)
}
