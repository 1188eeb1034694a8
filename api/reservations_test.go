package api_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/api/apitest"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

func TestReservationsAreListedByAgeAndReleasedOnlyWhileUnchanged(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	d := dirClient(t, c.Nodes[c.Follower()].APIAddr)
	ctx := testCtx(t)
	must := func(r *rookeryv1.WriteResponse, err error) uint64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return r.GetRevision()
	}
	old := must(d.Reserve(ctx, &rookeryv1.ReserveRequest{Name: "user.old", Location: "be1!default"}))
	must(d.Reserve(ctx, &rookeryv1.ReserveRequest{Name: "user.moved", Location: "be1!default"}))
	time.Sleep(50 * time.Millisecond)
	cut := time.Now().UnixNano()
	time.Sleep(50 * time.Millisecond)
	must(d.Reserve(ctx, &rookeryv1.ReserveRequest{Name: "user.new", Location: "be2!default"}))
	must(d.Activate(ctx, &rookeryv1.ActivateRequest{Name: "user.active", Location: "be1!default", Acl: "a\tlr\t"}))
	moved := must(d.Reserve(ctx, &rookeryv1.ReserveRequest{Name: "user.moved", Location: "be1!default"})) // re-reserved: newer

	names := func(req *rookeryv1.ListReservationsRequest) []string {
		t.Helper()
		var out []string
		for {
			resp, err := d.ListReservations(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range resp.GetMailboxes() {
				if m.GetState() != rookeryv1.MailboxState_MAILBOX_STATE_RESERVED {
					t.Fatalf("listed %v", m)
				}
				out = append(out, m.GetName())
			}
			if resp.GetNextPageToken() == "" {
				return out
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}
	if got := fmt.Sprint(names(&rookeryv1.ListReservationsRequest{PageSize: 1})); got != "[user.moved user.new user.old]" {
		t.Fatalf("all reservations, one per page: %s", got)
	}
	if got := fmt.Sprint(names(&rookeryv1.ListReservationsRequest{ReservedBeforeUnixNano: cut})); got != "[user.old]" {
		t.Fatalf("reservations older than the cut: %s", got)
	}

	tests := []struct {
		name string
		req  *rookeryv1.ReleaseRequest
		want codes.Code
	}{
		{"a stale revision", &rookeryv1.ReleaseRequest{Name: "user.moved", Revision: moved - 3}, codes.Aborted},
		{"an active mailbox", &rookeryv1.ReleaseRequest{Name: "user.active"}, codes.FailedPrecondition},
		{"a missing name", &rookeryv1.ReleaseRequest{Name: "user.none"}, codes.NotFound},
		{"no name", &rookeryv1.ReleaseRequest{}, codes.InvalidArgument},
		{"the listed revision", &rookeryv1.ReleaseRequest{Name: "user.old", Revision: old}, codes.OK},
		{"the current reservation", &rookeryv1.ReleaseRequest{Name: "user.moved"}, codes.OK},
	}
	for _, tt := range tests {
		if _, err := d.Release(ctx, tt.req); status.Code(err) != tt.want {
			t.Errorf("release of %s: %v, want %s", tt.name, err, tt.want)
		}
	}
	if got := fmt.Sprint(names(&rookeryv1.ListReservationsRequest{})); got != "[user.new]" {
		t.Fatalf("reservations after releases: %s", got)
	}
	if _, err := d.Get(ctx, &rookeryv1.GetRequest{Name: "user.active"}); err != nil {
		t.Fatalf("active mailbox after a refused release: %v", err)
	}
}

// TestReleaseLosingARaceWithActivateLeavesTheMailboxActive: the backend's
// ACTIVATE lands first, so the operator's release of the reservation it
// listed is refused. Then both race for real on many names: whatever the
// order, every mailbox ends ACTIVE, and a release that won came before the
// activation that recreated the entry.
func TestReleaseLosingARaceWithActivateLeavesTheMailboxActive(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	operator := dirClient(t, c.Nodes[c.Follower()].APIAddr)
	backend := dirClient(t, c.Nodes[c.WaitLeader()].APIAddr)
	ctx := testCtx(t)

	r, err := backend.Reserve(ctx, &rookeryv1.ReserveRequest{Name: "user.x", Location: "be1!default"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backend.Activate(ctx, &rookeryv1.ActivateRequest{Name: "user.x", Location: "be1!default"}); err != nil {
		t.Fatal(err)
	}
	if _, err := operator.Release(ctx, &rookeryv1.ReleaseRequest{Name: "user.x", Revision: r.GetRevision()}); status.Code(err) != codes.Aborted {
		t.Fatalf("release after the activate: %v, want Aborted", err)
	}
	g, err := operator.Get(ctx, &rookeryv1.GetRequest{Name: "user.x"})
	if err != nil || g.GetMailbox().GetState() != rookeryv1.MailboxState_MAILBOX_STATE_ACTIVE {
		t.Fatalf("after the refused release: %v %v, want ACTIVE", g, err)
	}

	const n = 60
	released := make([]uint64, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("user.race%02d", i)
		for {
			// A RESERVE repeated at the same location is harmless.
			_, err := backend.Reserve(ctx, &rookeryv1.ReserveRequest{Name: name, Location: "be1!default"})
			if status.Code(err) == codes.Unavailable {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			// ACTIVATE is an upsert: repeat it when the outcome is unknown
			// (a leader change under the shared machine's load).
			for {
				_, err := backend.Activate(ctx, &rookeryv1.ActivateRequest{Name: name, Location: "be1!default"})
				if status.Code(err) == codes.Unavailable {
					continue
				}
				if err != nil {
					t.Errorf("activate %s: %v", name, err)
				}
				return
			}
		}()
		go func() {
			defer wg.Done()
			resp, err := operator.Release(ctx, &rookeryv1.ReleaseRequest{Name: name})
			switch status.Code(err) {
			case codes.OK:
				released[i] = resp.GetRevision()
			case codes.Aborted, codes.FailedPrecondition, codes.Unavailable:
				// Refused, or unknown outcome: the state check below holds either way.
			default:
				t.Errorf("release %s: %v", name, err)
			}
		}()
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("user.race%02d", i)
		g, err := operator.Get(ctx, &rookeryv1.GetRequest{Name: name})
		if err != nil || g.GetMailbox().GetState() != rookeryv1.MailboxState_MAILBOX_STATE_ACTIVE {
			t.Fatalf("%s after the race: %v %v, want ACTIVE", name, g.GetMailbox(), err)
		}
		if released[i] != 0 && g.GetMailbox().GetCreateRevision() < released[i] {
			t.Fatalf("%s: release at %d won, yet the entry was created at %d", name, released[i], g.GetMailbox().GetCreateRevision())
		}
	}
}

func TestBatchAppliesManyWritesInFewEntriesWithPerCommandOutcomes(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	d := dirClient(t, c.Nodes[c.Follower()].APIAddr)
	ctx := testCtx(t)
	const op = rookeryv1.Operation_OPERATION_ACTIVATE
	r, err := d.Reserve(ctx, &rookeryv1.ReserveRequest{Name: "user.held", Location: "be9!default"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.Batch(ctx, &rookeryv1.BatchRequest{Commands: []*rookeryv1.BatchCommand{
		{Op: op, Name: "user.a", Location: "be1!default", Acl: "a\tlr\t"},
		{Op: rookeryv1.Operation_OPERATION_RESERVE, Name: "user.held", Location: "be1!default"},
		{Op: rookeryv1.Operation_OPERATION_DELETE, Name: "user.none"},
		{Op: rookeryv1.Operation_OPERATION_UNSPECIFIED, Name: "user.b", Location: "be1!default"},
		{Op: op, Name: "", Location: "be1!default"},
		{Op: rookeryv1.Operation_OPERATION_DELETE, Name: "user.held", IfRevision: r.GetRevision() + 100},
		{Op: rookeryv1.Operation_OPERATION_DEACTIVATE, Name: "user.a", Location: "be2!default"},
		{Op: rookeryv1.Operation_OPERATION_DELETE, Name: "user.held", IfRevision: r.GetRevision()},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []codes.Code{codes.OK, codes.AlreadyExists, codes.NotFound, codes.InvalidArgument, codes.InvalidArgument, codes.Aborted, codes.OK, codes.OK}
	for i, res := range resp.GetResults() {
		if codes.Code(res.GetCode()) != want[i] || (want[i] == codes.OK) != (res.GetRevision() != 0) {
			t.Errorf("command %d: %v, want %s", i, res, want[i])
		}
	}
	if len(resp.GetResults()) != len(want) || resp.GetRevision() != r.GetRevision()+3 {
		t.Fatalf("%d results, revision %d (reserve at %d)", len(resp.GetResults()), resp.GetRevision(), r.GetRevision())
	}
	g, err := d.Get(ctx, &rookeryv1.GetRequest{Name: "user.a"})
	if err != nil || g.GetMailbox().GetState() != rookeryv1.MailboxState_MAILBOX_STATE_RESERVED || g.GetMailbox().GetLocation() != "be2!default" {
		t.Fatalf("user.a after activate and deactivate in one batch: %v %v", g.GetMailbox(), err)
	}

	// A full batch goes through a handful of raft entries, not 10,000.
	leader := c.Nodes[c.WaitLeader()].Node()
	before := leader.Store().AppliedIndex()
	big := make([]*rookeryv1.BatchCommand, 10_000)
	for i := range big {
		big[i] = &rookeryv1.BatchCommand{Op: op, Name: mailboxName(i), Location: location(i), Acl: acl(i)}
	}
	resp, err = d.Batch(ctx, &rookeryv1.BatchRequest{Commands: big})
	if err != nil {
		t.Fatal(err)
	}
	for i, res := range resp.GetResults() {
		if res.GetCode() != 0 {
			t.Fatalf("command %d: %v", i, res)
		}
	}
	// Three entries of 4096 commands at most, plus whatever the cluster
	// itself logged meanwhile (a leader's no-op and peer records).
	if entries := leader.Store().AppliedIndex() - before; entries > 8 {
		t.Fatalf("10,000 activations took %d raft entries, want a handful", entries)
	}
	if n := leader.Store().Len(); n != 10_001 {
		t.Fatalf("%d mailboxes after the batch, want 10001", n)
	}
	if _, err := d.Batch(ctx, &rookeryv1.BatchRequest{Commands: append(big, big[0])}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("batch over the limit: %v, want InvalidArgument", err)
	}
}
