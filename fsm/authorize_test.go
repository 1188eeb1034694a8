package fsm

import (
	"strings"
	"testing"
)

// TestBoundIdentityWritesOnlyItsOwnServer runs every command, issued by an
// identity bound to be1, over every prior state: the decision is taken on
// the committed entry, so a hijack of a be2 mailbox (ACTIVATE over it,
// DEACTIVATE it to be1, DELETE it) is refused whatever the proposer saw.
func TestBoundIdentityWritesOnlyItsOwnServer(t *testing.T) {
	const bound = "be1"
	type cmd struct {
		desc string
		c    Command
	}
	cmds := []cmd{
		{"reserve on own server", Command{Op: OpReserve, Location: locA}},
		{"reserve on another server", Command{Op: OpReserve, Location: locB}},
		{"activate on own server", Command{Op: OpActivate, Location: locA, ACL: "evil\tlrswipkxtecda\t"}},
		{"activate on another server", Command{Op: OpActivate, Location: locB}},
		{"deactivate to own server", Command{Op: OpDeactivate, Location: locA}},
		{"deactivate to another server", Command{Op: OpDeactivate, Location: locB}},
		{"delete", Command{Op: OpDelete}},
	}
	const (
		ok     = CodeOK
		denied = CodePermissionDenied
	)
	// want[command][prior state], prior states in the order of priorStates:
	// absent, reserved here (be1), reserved elsewhere (be2), active here,
	// active elsewhere.
	want := map[string][5]Code{
		"reserve on own server":        {ok, ok, CodeExists, ok, CodeExists},
		"reserve on another server":    {denied, denied, denied, denied, denied},
		"activate on own server":       {ok, ok, ok /* XFER destination */, ok, denied},
		"activate on another server":   {denied, denied, denied, denied, denied},
		"deactivate to own server":     {CodeNotFound, CodeNotActive, denied, ok, denied},
		"deactivate to another server": {denied, denied, denied, denied, denied},
		"delete":                       {CodeNotFound, ok, denied, ok, denied},
	}
	for _, tc := range cmds {
		for i, ps := range priorStates {
			t.Run(strings.ReplaceAll(tc.desc+"/"+ps.desc, " ", "_"), func(t *testing.T) {
				s := New(DefaultConfig())
				s.Apply(1, ps.setup)
				before, existed := s.Get("user.a")
				c := tc.c
				c.Name, c.Identity, c.Bound, c.Time = "user.a", bound, bound, 20
				rs := s.Apply(2, []Command{c})
				if rs[0].Code != want[tc.desc][i] {
					t.Fatalf("code %v (%s), want %v (%s)", rs[0].Code, rs[0].Code, want[tc.desc][i], want[tc.desc][i])
				}
				if rs[0].Code == CodeOK {
					return
				}
				after, exists := s.Get("user.a")
				if exists != existed || after != before {
					t.Fatalf("refused command changed the entry: %+v -> %+v", before, after)
				}
			})
		}
	}
}

// TestUnboundWriterMovesBetweenServers: an unbound writer (an admin) keeps
// the right to move a mailbox anywhere.
func TestUnboundWriterMovesBetweenServers(t *testing.T) {
	s := New(DefaultConfig())
	s.Apply(1, []Command{{Op: OpActivate, Name: "user.a", Location: locA, Bound: "be1"}})
	rs := s.Apply(2, []Command{
		{Op: OpDeactivate, Name: "user.a", Location: locB, Identity: "admin"},
		{Op: OpActivate, Name: "user.a", Location: locB, Identity: "admin"},
	})
	for i, r := range rs {
		if r.Code != CodeOK {
			t.Fatalf("command %d: %v", i, r.Code)
		}
	}
	if e, _ := s.Get("user.a"); e.Location != locB {
		t.Fatalf("entry at %q, want %q", e.Location, locB)
	}
}

// TestXFERByBoundBackends replays the MUPDATE writes of a real Cyrus XFER
// from be1 to be2 with both backends bound (docs/authorization.md): the
// source deactivates to its own location, the destination activates.
func TestXFERByBoundBackends(t *testing.T) {
	s := New(DefaultConfig())
	s.Apply(1, []Command{{Op: OpActivate, Name: "user.carol", Location: locA, Identity: "be1", Bound: "be1"}})
	rs := s.Apply(2, []Command{
		{Op: OpDeactivate, Name: "user.carol", Location: locA, Identity: "be1", Bound: "be1"},
		{Op: OpActivate, Name: "user.carol", Location: locB, ACL: aclA, Identity: "be2", Bound: "be2"},
		// The source may not take it back once the destination holds it.
		{Op: OpActivate, Name: "user.carol", Location: locA, Identity: "be1", Bound: "be1"},
		{Op: OpDelete, Name: "user.carol", Identity: "be1", Bound: "be1"},
	})
	want := []Code{CodeOK, CodeOK, CodePermissionDenied, CodePermissionDenied}
	for i, r := range rs {
		if r.Code != want[i] {
			t.Fatalf("command %d: %v, want %v", i, r.Code, want[i])
		}
	}
}
