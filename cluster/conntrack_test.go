package cluster

import (
	"crypto/tls"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/rookery/rookery/internal/freeport"
)

// Closing a raft transport ends the goroutines raft runs per accepted
// connection, although the peer that dialed keeps its end open in its
// pool: a node that stops leaves nothing blocked on a peer link behind it,
// with the secret handshake and with TLS alike.
func TestClosedTransportsLeaveNoConnectionGoroutines(t *testing.T) {
	ca := newTestCA(t, "conntrack")
	tests := []struct {
		name   string
		tls    func(id string) *tls.Config
		secret []byte
	}{
		{"secret handshake", func(string) *tls.Config { return nil }, []byte(testRaftSecret)},
		{"mutual TLS", func(id string) *tls.Config { return ca.nodeTLS(t, id) }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logger := testLogger(t)
			a, _, err := newTransport(freeport.Addr(t), "", tc.tls("a"), tc.secret, logger)
			if err != nil {
				t.Fatal(err)
			}
			b, _, err := newTransport(freeport.Addr(t), "", tc.tls("b"), tc.secret, logger)
			if err != nil {
				a.Close()
				t.Fatal(err)
			}
			// b answers one vote request; afterwards a keeps the
			// connection in its pool and b's handler waits on it.
			go func() {
				rpc := <-b.Consumer()
				rpc.Respond(&raft.RequestVoteResponse{Granted: true}, nil)
			}()
			var resp raft.RequestVoteResponse
			err = a.RequestVote("b", b.LocalAddr(), &raft.RequestVoteRequest{Term: 1}, &resp)
			if err != nil || !resp.Granted {
				t.Fatalf("vote over the link: %v %+v", err, resp)
			}
			b.Close()
			waitGone(t, "raft.(*NetworkTransport).handleConn")
			a.Close()
			goleak.VerifyNone(t)
		})
	}
}

// waitGone waits until no goroutine runs fn, failing the test after 10 s.
func waitGone(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(10 * time.Second); ; {
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, fn) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a goroutine still runs %s:\n%s", fn, stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
