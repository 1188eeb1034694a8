package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/pbconv"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// collect receives from a Watch stream until it has seen revision upTo,
// and returns the events. It also checks what every message promises:
// events in order, never at or below the revision already covered.
func collect(t *testing.T, st grpc.ServerStreamingClient[rookeryv1.WatchResponse], upTo uint64) []fsm.Event {
	t.Helper()
	var (
		out     []fsm.Event
		covered uint64
	)
	for covered < upTo {
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("watch ended at revision %d before %d: %v", covered, upTo, err)
		}
		for _, p := range resp.GetEvents() {
			ev := pbconv.EventFromProto(p)
			if ev.Revision <= covered {
				t.Fatalf("event at revision %d after revision %d was covered", ev.Revision, covered)
			}
			covered = ev.Revision
			out = append(out, ev)
		}
		if resp.GetRevision() < covered {
			t.Fatalf("message revision %d below its last event %d", resp.GetRevision(), covered)
		}
		covered = resp.GetRevision()
	}
	return out
}

func TestWatchFromMiddleRevisionOnFollowerReplaysTheFSMLog(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	cl := newClient(t, c.Endpoints())
	activateN(t, cl, 0, 30)
	ctx := testCtx(t)
	// Moves and deletes too, so every op and event type is on the feed.
	if _, err := cl.Deactivate(ctx, mailboxName(3), "imap-be09!default"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Delete(ctx, mailboxName(4)); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Reserve(ctx, "user.new", "imap-be01!default"); err != nil {
		t.Fatal(err)
	}
	last, err := cl.Activate(ctx, "user.new", "imap-be01!default", "new\tlrs\t")
	if err != nil {
		t.Fatal(err)
	}
	st, err := dirClient(t, c.Nodes[c.Follower()].APIAddr).Watch(ctx, &rookeryv1.WatchRequest{FromRevision: 10})
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, st, last)
	sameEvents(t, got, leaderLog(t, c, 10))
}

func TestWatchFromZeroStartsAtTheCurrentRevision(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	cl := newClient(t, c.Endpoints())
	before := activateN(t, cl, 0, 5)
	ctx := testCtx(t)
	d := dirClient(t, c.Nodes[c.Follower()].APIAddr)
	if _, err := d.WaitRevision(ctx, &rookeryv1.WaitRevisionRequest{Revision: before}); err != nil {
		t.Fatal(err)
	}
	st, err := d.Watch(ctx, &rookeryv1.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if first.GetRevision() != before || len(first.GetEvents()) != 0 {
		t.Fatalf("first message: revision %d with %d events, want the current revision %d and no events", first.GetRevision(), len(first.GetEvents()), before)
	}
	last := activateN(t, cl, 5, 12)
	got := collect(t, st, last)
	sameEvents(t, got, leaderLog(t, c, before))
}

func TestWatchFromCompactedRevisionEndsWithWatchCompactedDetail(t *testing.T) {
	c := apitest.Start(t, apitest.Options{Cluster: func(_ int, cfg *cluster.Config) { cfg.FSM.HistorySize = 8 }})
	cl := newClient(t, c.Endpoints())
	last := activateN(t, cl, 0, 30)
	ctx := testCtx(t)
	d := dirClient(t, c.Nodes[c.Follower()].APIAddr)
	if _, err := d.WaitRevision(ctx, &rookeryv1.WaitRevisionRequest{Revision: last}); err != nil {
		t.Fatal(err)
	}
	st, err := d.Watch(ctx, &rookeryv1.WatchRequest{FromRevision: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil { // the start message
		t.Fatal(err)
	}
	_, err = st.Recv()
	s := status.Convert(err)
	if s.Code() != codes.FailedPrecondition || !strings.Contains(s.Message(), "compacted") {
		t.Fatalf("watch from a compacted revision: %v, want FailedPrecondition saying compacted", err)
	}
	var detail *rookeryv1.WatchCompacted
	for _, d := range s.Details() {
		if wc, ok := d.(*rookeryv1.WatchCompacted); ok {
			detail = wc
		}
	}
	if detail == nil {
		t.Fatalf("no WatchCompacted detail in %v", s.Details())
	}
	if detail.GetCurrentRevision() != last || detail.GetCompactRevision() != last-8 {
		t.Fatalf("detail %v, want compact %d current %d", detail, last-8, last)
	}
	// The oldest revision the detail names can be watched from.
	st, err = d.Watch(ctx, &rookeryv1.WatchRequest{FromRevision: detail.GetCompactRevision()})
	if err != nil {
		t.Fatal(err)
	}
	sameEvents(t, collect(t, st, last), leaderLog(t, c, detail.GetCompactRevision()))
}

func TestWatchFiltersByNamePrefixAndByOldOrNewLocation(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	cl := newClient(t, c.Endpoints())
	ctx := testCtx(t)
	d := dirClient(t, c.Nodes[c.Follower()].APIAddr)
	byName, err := d.Watch(ctx, &rookeryv1.WatchRequest{NamePrefix: "example.com!"})
	if err != nil {
		t.Fatal(err)
	}
	byLoc, err := d.Watch(ctx, &rookeryv1.WatchRequest{LocationPrefix: "imap-be01!"})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []grpc.ServerStreamingClient[rookeryv1.WatchResponse]{byName, byLoc} {
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	activateN(t, cl, 0, 16)
	// Move one imap-be01 mailbox away: the location watcher must see it go.
	last, err := cl.Deactivate(ctx, mailboxName(1), "imap-be03!default")
	if err != nil {
		t.Fatal(err)
	}
	all := leaderLog(t, c, 0)
	var wantName, wantLoc []fsm.Event
	for _, ev := range all {
		if strings.HasPrefix(ev.Entry.Name, "example.com!") {
			wantName = append(wantName, ev)
		}
		if strings.HasPrefix(ev.Entry.Location, "imap-be01!") || strings.HasPrefix(ev.PrevLocation, "imap-be01!") {
			wantLoc = append(wantLoc, ev)
		}
	}
	sameEvents(t, collect(t, byName, last), wantName)
	gotLoc := collect(t, byLoc, last)
	sameEvents(t, gotLoc, wantLoc)
	if mv := gotLoc[len(gotLoc)-1]; mv.Op != fsm.OpDeactivate || mv.PrevLocation != location(1) {
		t.Fatalf("last location event %+v, want the move away from %s", mv, location(1))
	}
	both, err := d.Watch(ctx, &rookeryv1.WatchRequest{NamePrefix: "a", LocationPrefix: "b"})
	if err == nil {
		_, err = both.Recv() // a server stream reports its status on Recv
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("watch with both filters: %v, want InvalidArgument", err)
	}
}

func TestWatchSendsProgressWithTheCurrentRevision(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	cl := newClient(t, c.Endpoints())
	last := activateN(t, cl, 0, 3)
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Second)
	defer cancel()
	d := dirClient(t, c.Nodes[c.Follower()].APIAddr)
	// Filtered so that no event matches: only progress can report that
	// the stream has covered the new revisions.
	st, err := d.Watch(ctx, &rookeryv1.WatchRequest{FromRevision: last, NamePrefix: "nomatch.", ProgressIntervalMs: 100})
	if err != nil {
		t.Fatal(err)
	}
	next := activateN(t, cl, 3, 6)
	for {
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("no progress message reached revision %d: %v", next, err)
		}
		if len(resp.GetEvents()) > 0 {
			t.Fatalf("filtered watch sent events %v", resp.GetEvents())
		}
		if resp.GetRevision() == next {
			return
		}
		if resp.GetRevision() > next {
			t.Fatalf("progress at %d beyond the last write %d", resp.GetRevision(), next)
		}
	}
}
