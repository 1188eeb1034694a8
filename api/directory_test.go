package api_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

func TestGetIsLinearizableOnAnyFollowerAndStaleOnRequest(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	l := c.WaitLeader()
	var followers []int
	for i := range c.Nodes {
		if i != l {
			followers = append(followers, i)
		}
	}
	writer := dirClient(t, c.Nodes[followers[0]].APIAddr)
	reader := dirClient(t, c.Nodes[followers[1]].APIAddr)
	ctx := testCtx(t)
	for i := 0; i < 20; i++ {
		w, err := writer.Activate(ctx, &rookeryv1.ActivateRequest{Name: mailboxName(i), Location: location(i), Acl: acl(i)})
		if err != nil {
			t.Fatalf("activate through follower: %v", err)
		}
		// A linearizable read on the other follower, right after the
		// write was acknowledged, must see it.
		g, err := reader.Get(ctx, &rookeryv1.GetRequest{Name: mailboxName(i)})
		if err != nil {
			t.Fatalf("linearizable get %s on follower: %v", mailboxName(i), err)
		}
		if g.GetMailbox().GetModRevision() != w.GetRevision() || g.GetRevision() < w.GetRevision() {
			t.Fatalf("get after write at %d: mod_revision %d, read at %d", w.GetRevision(), g.GetMailbox().GetModRevision(), g.GetRevision())
		}
		if g.GetMailbox().GetAcl() != acl(i) || g.GetMailbox().GetState() != rookeryv1.MailboxState_MAILBOX_STATE_ACTIVE {
			t.Fatalf("get %s: %v", mailboxName(i), g.GetMailbox())
		}
	}
	// A stale read is served locally; after WaitRevision it is current.
	last, err := writer.Delete(ctx, &rookeryv1.DeleteRequest{Name: mailboxName(0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reader.WaitRevision(ctx, &rookeryv1.WaitRevisionRequest{Revision: last.GetRevision()}); err != nil {
		t.Fatal(err)
	}
	_, err = reader.Get(ctx, &rookeryv1.GetRequest{Name: mailboxName(0), Consistency: rookeryv1.Consistency_CONSISTENCY_STALE})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("stale get of a deleted mailbox after WaitRevision: %v, want NotFound", err)
	}
	g, err := reader.Get(ctx, &rookeryv1.GetRequest{Name: mailboxName(1), Consistency: rookeryv1.Consistency_CONSISTENCY_STALE})
	if err != nil || g.GetRevision() < last.GetRevision() {
		t.Fatalf("stale get: %v at %d, want revision >= %d", err, g.GetRevision(), last.GetRevision())
	}
}

func TestWritesMapDirectoryOutcomesToStatusCodes(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	d := dirClient(t, c.Nodes[c.Follower()].APIAddr)
	ctx := testCtx(t)
	type step struct {
		name    string
		call    func() (*rookeryv1.WriteResponse, error)
		code    codes.Code
		message string // substring of the status message
	}
	reserve := func(n, l string) func() (*rookeryv1.WriteResponse, error) {
		return func() (*rookeryv1.WriteResponse, error) {
			return d.Reserve(ctx, &rookeryv1.ReserveRequest{Name: n, Location: l})
		}
	}
	activate := func(n, l, a string) func() (*rookeryv1.WriteResponse, error) {
		return func() (*rookeryv1.WriteResponse, error) {
			return d.Activate(ctx, &rookeryv1.ActivateRequest{Name: n, Location: l, Acl: a})
		}
	}
	deactivate := func(n, l string) func() (*rookeryv1.WriteResponse, error) {
		return func() (*rookeryv1.WriteResponse, error) {
			return d.Deactivate(ctx, &rookeryv1.DeactivateRequest{Name: n, Location: l})
		}
	}
	del := func(n string) func() (*rookeryv1.WriteResponse, error) {
		return func() (*rookeryv1.WriteResponse, error) { return d.Delete(ctx, &rookeryv1.DeleteRequest{Name: n}) }
	}
	steps := []step{
		{"reserve a new name", reserve("user.alice", "be1!default"), codes.OK, ""},
		{"reserve again at the same location (Cyrus accepts)", reserve("user.alice", "be1!default"), codes.OK, ""},
		{"reserve at another location", reserve("user.alice", "be2!default"), codes.AlreadyExists, "mailbox already exists"},
		{"deactivate a reserved entry", deactivate("user.alice", "be1!default"), codes.FailedPrecondition, "mailbox not currently active"},
		{"activate the reservation", activate("user.alice", "be1!default", "alice\tlrswipkxtecdan\t"), codes.OK, ""},
		{"activate elsewhere (upsert)", activate("user.alice", "be2!p2", "alice\tlrs\t"), codes.OK, ""},
		{"deactivate an active entry", deactivate("user.alice", "be3!default"), codes.OK, ""},
		{"deactivate a missing name", deactivate("user.nobody", "be1!default"), codes.NotFound, "mailbox doesn't exist"},
		{"delete", del("user.alice"), codes.OK, ""},
		{"delete a missing name", del("user.alice"), codes.NotFound, "mailbox doesn't exist"},
		{"reserve without a name", reserve("", "be1!default"), codes.InvalidArgument, "name"},
		{"reserve without a location", reserve("user.bob", ""), codes.InvalidArgument, "location"},
		{"activate a name with a newline", activate("user.bob\r\nX", "be1!default", ""), codes.InvalidArgument, "name: forbidden byte"},
		{"deactivate without a location", deactivate("user.bob", ""), codes.InvalidArgument, "location"},
		{"delete without a name", del(""), codes.InvalidArgument, "name"},
	}
	var lastRev uint64
	for _, s := range steps {
		resp, err := s.call()
		if status.Code(err) != s.code {
			t.Fatalf("%s: got %v, want %s", s.name, err, s.code)
		}
		if s.message != "" && !strings.Contains(status.Convert(err).Message(), s.message) {
			t.Fatalf("%s: message %q does not name %q", s.name, status.Convert(err).Message(), s.message)
		}
		if err == nil {
			if resp.GetRevision() <= lastRev {
				t.Fatalf("%s: revision %d not after %d", s.name, resp.GetRevision(), lastRev)
			}
			lastRev = resp.GetRevision()
		}
	}
	// The final state is what the successful steps made: deleted.
	_, err := d.Get(ctx, &rookeryv1.GetRequest{Name: "user.alice"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := d.Get(ctx, &rookeryv1.GetRequest{}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "name") {
		t.Fatalf("get without a name: %v", err)
	}
}

func TestListPagesReadOneRevisionWhileWritesContinue(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	cl := newClient(t, c.Endpoints())
	activateN(t, cl, 0, 40)
	node := c.Nodes[c.Follower()]
	d := dirClient(t, node.APIAddr)
	ctx := testCtx(t)
	if _, err := d.WaitRevision(ctx, &rookeryv1.WaitRevisionRequest{Revision: 40}); err != nil {
		t.Fatal(err)
	}
	want := node.Node().Store().View() // the state the listing must show
	req := &rookeryv1.ListRequest{PageSize: 7}
	var got []string
	var rev uint64
	for page := 0; ; page++ {
		resp, err := d.List(ctx, req)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if page == 0 {
			rev = resp.GetRevision()
			// Writes after the first page must not show in later pages.
			activateN(t, cl, 40, 50)
			if _, err := cl.Delete(ctx, mailboxName(39)); err != nil {
				t.Fatal(err)
			}
		} else if resp.GetRevision() != rev {
			t.Fatalf("page %d at revision %d, first page at %d", page, resp.GetRevision(), rev)
		}
		if len(resp.GetMailboxes()) > 7 {
			t.Fatalf("page %d has %d entries, page size 7", page, len(resp.GetMailboxes()))
		}
		for _, m := range resp.GetMailboxes() {
			got = append(got, m.GetName())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if rev != want.Revision() {
		t.Fatalf("listing at revision %d, view at %d", rev, want.Revision())
	}
	var expect []string
	want.ScanName("", func(e fsm.Entry) bool { expect = append(expect, e.Name); return true })
	if !slices.Equal(got, expect) {
		t.Fatalf("listing differs from the view at its revision:\n got  %v\n want %v", got, expect)
	}
	if !slices.IsSortedFunc(got, fsm.Compare) {
		t.Fatalf("listing not in dbname order: %v", got)
	}
}

func TestListFiltersByNamePrefixAndLocationPrefix(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	cl := newClient(t, c.Endpoints())
	activateN(t, cl, 0, 60)
	ctx := testCtx(t)
	all, _, err := cl.ListAll(ctx, client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 60 {
		t.Fatalf("list all: %d entries, want 60", len(all))
	}
	cases := []struct {
		opts  client.ListOptions
		match func(fsm.Entry) bool
	}{
		{client.ListOptions{NamePrefix: "example.com!"}, func(e fsm.Entry) bool { return strings.HasPrefix(e.Name, "example.com!") }},
		{client.ListOptions{NamePrefix: "user.u0001"}, func(e fsm.Entry) bool { return strings.HasPrefix(e.Name, "user.u0001") }},
		{client.ListOptions{LocationPrefix: "imap-be01!"}, func(e fsm.Entry) bool { return strings.HasPrefix(e.Location, "imap-be01!") }},
		{client.ListOptions{LocationPrefix: "imap-be0", Stale: true}, func(e fsm.Entry) bool { return true }},
		{client.ListOptions{LocationPrefix: "nowhere"}, func(e fsm.Entry) bool { return false }},
	}
	for _, tc := range cases {
		got, _, err := cl.ListAll(ctx, tc.opts)
		if err != nil {
			t.Fatalf("%+v: %v", tc.opts, err)
		}
		var want []fsm.Entry
		for _, e := range all {
			if tc.match(e) {
				want = append(want, e)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%+v: got %d entries, want %d", tc.opts, len(got), len(want))
		}
	}
	// Pagination under a location filter resumes after the last name.
	d := dirClient(t, c.Endpoints()[0])
	req := &rookeryv1.ListRequest{LocationPrefix: "imap-be02!", PageSize: 4}
	var names []string
	for {
		resp, err := d.List(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range resp.GetMailboxes() {
			names = append(names, m.GetName())
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if len(names) != 15 || !slices.IsSortedFunc(names, fsm.Compare) {
		t.Fatalf("paged location listing: %d names %v, want 15 in order", len(names), names)
	}
}

func TestListRejectsBadPageTokensAndExpiredViews(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	cl := newClient(t, c.Endpoints())
	activateN(t, cl, 0, 10)
	ctx := testCtx(t)
	a := dirClient(t, c.Nodes[0].APIAddr)
	first, err := a.List(ctx, &rookeryv1.ListRequest{PageSize: 3, Consistency: rookeryv1.Consistency_CONSISTENCY_LINEARIZABLE})
	if err != nil || first.GetNextPageToken() == "" {
		t.Fatalf("first page: %v", err)
	}
	cases := []struct {
		name string
		req  *rookeryv1.ListRequest
		code codes.Code
		msg  string
	}{
		{"garbage token", &rookeryv1.ListRequest{PageToken: "not-a-token!"}, codes.InvalidArgument, "page_token"},
		{"token for another filter", &rookeryv1.ListRequest{PageToken: first.GetNextPageToken(), NamePrefix: "user."}, codes.InvalidArgument, "page_token"},
		{"both filters", &rookeryv1.ListRequest{NamePrefix: "a", LocationPrefix: "b"}, codes.InvalidArgument, "name_prefix"},
		{"bad consistency", &rookeryv1.ListRequest{Consistency: 7}, codes.InvalidArgument, "consistency"},
	}
	for _, tc := range cases {
		_, err := a.List(ctx, tc.req)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Fatalf("%s: %v, want %s naming %q", tc.name, err, tc.code, tc.msg)
		}
	}
	// After more writes, another node has neither the pinned view nor the
	// revision: it must say the listing has to start over.
	activateN(t, cl, 10, 12)
	b := dirClient(t, c.Nodes[1].APIAddr)
	if _, err := b.WaitRevision(ctx, &rookeryv1.WaitRevisionRequest{Revision: 12}); err != nil {
		t.Fatal(err)
	}
	_, err = b.List(ctx, &rookeryv1.ListRequest{PageSize: 3, PageToken: first.GetNextPageToken()})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "no longer available") {
		t.Fatalf("token on another node: %v, want FailedPrecondition saying the revision is no longer available", err)
	}
	// The node that served the first page still has it.
	second, err := a.List(ctx, &rookeryv1.ListRequest{PageSize: 3, PageToken: first.GetNextPageToken()})
	if err != nil || second.GetRevision() != first.GetRevision() {
		t.Fatalf("second page on the same node: %v (revision %d, first %d)", err, second.GetRevision(), first.GetRevision())
	}
}

func TestWithoutQuorumWritesAndLinearizableReadsFailUnavailableButStaleReadsWork(t *testing.T) {
	c := apitest.Start(t, apitest.Options{Cluster: func(_ int, cfg *cluster.Config) { cfg.WriteTimeout = time.Second }})
	cl := newClient(t, c.Endpoints())
	activateN(t, cl, 0, 3)
	survivor := c.Nodes[2]
	d := dirClient(t, survivor.APIAddr)
	if _, err := d.WaitRevision(testCtx(t), &rookeryv1.WaitRevisionRequest{Revision: 3}); err != nil {
		t.Fatal(err)
	}
	c.Stop(0)
	c.Stop(1)
	ctx := testCtx(t)
	start := time.Now()
	_, err := d.Activate(ctx, &rookeryv1.ActivateRequest{Name: "user.late", Location: "be1!default"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("write without quorum: %v, want Unavailable", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("write without quorum took %v; it must fail fast", took)
	}
	if _, err := d.Get(ctx, &rookeryv1.GetRequest{Name: mailboxName(1)}); status.Code(err) != codes.Unavailable {
		t.Fatalf("linearizable get without quorum: %v, want Unavailable", err)
	}
	g, err := d.Get(ctx, &rookeryv1.GetRequest{Name: mailboxName(1), Consistency: rookeryv1.Consistency_CONSISTENCY_STALE})
	if err != nil || g.GetMailbox().GetLocation() != location(1) {
		t.Fatalf("stale get without quorum: %v %v", g, err)
	}
}
