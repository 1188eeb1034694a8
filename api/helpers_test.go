package api_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// testCtx bounds a test's calls generously: the machine is shared.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// conn opens a plain gRPC connection to one node.
func conn(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func dirClient(t testing.TB, addr string) rookeryv1.DirectoryClient {
	return rookeryv1.NewDirectoryClient(conn(t, addr))
}

func newClient(t testing.TB, endpoints []string) *client.Client {
	t.Helper()
	cfg := client.DefaultConfig()
	cfg.Logger = apitest.Logger(t)
	cl, err := client.Dial(endpoints, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func mailboxName(i int) string { return apitest.MailboxName(i) }
func location(i int) string    { return apitest.Location(i) }
func acl(i int) string         { return apitest.ACL(i) }

// activateN activates mailboxes [from, to) through the client.
func activateN(t testing.TB, cl *client.Client, from, to int) uint64 {
	t.Helper()
	var rev uint64
	for i := from; i < to; i++ {
		r, err := cl.Activate(testCtx(t), mailboxName(i), location(i), acl(i))
		if err != nil {
			t.Fatalf("activate %s: %v", mailboxName(i), err)
		}
		rev = r
	}
	return rev
}

func leaderLog(t testing.TB, c *apitest.Cluster, from uint64) []fsm.Event {
	return c.LeaderLog(t, from)
}

func sameEvents(t testing.TB, got, want []fsm.Event) { t.Helper(); apitest.SameEvents(t, got, want) }
