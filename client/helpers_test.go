package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/fsm"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
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

func leaderLog(t testing.TB, c *apitest.Cluster, from uint64) []fsm.Event {
	return c.LeaderLog(t, from)
}

func sameEvents(t testing.TB, got, want []fsm.Event) { t.Helper(); apitest.SameEvents(t, got, want) }

// activateN activates mailboxes [from, to) and returns the last revision.
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

// mixedWrites makes every kind of change for mailboxes [from, to): create
// (reserve then activate), a move of every third (deactivate), a delete of
// every fifth. It returns the last revision.
func mixedWrites(t testing.TB, cl *client.Client, from, to int) uint64 {
	t.Helper()
	ctx := testCtx(t)
	var rev uint64
	must := func(r uint64, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		rev = r
	}
	for i := from; i < to; i++ {
		must(cl.Reserve(ctx, mailboxName(i), location(i)))
		must(cl.Activate(ctx, mailboxName(i), location(i), acl(i)))
		if i%3 == 0 {
			must(cl.Deactivate(ctx, mailboxName(i), location(i+1)))
		}
		if i%5 == 0 {
			must(cl.Delete(ctx, mailboxName(i)))
		}
	}
	return rev
}
