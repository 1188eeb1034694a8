package fsm

import (
	"errors"
	"strings"
	"testing"
)

const (
	locA = "be1!default"
	locB = "be2!default"
	aclA = "alice\tlrswipkxtecdan\t"
)

// priorState puts name into one of the five states a command can meet and
// returns the store at revision 1 (or 0 for absent).
type priorState struct {
	desc  string
	setup []Command
}

var priorStates = []priorState{
	{"absent", nil},
	{"reserved here", []Command{{Op: OpReserve, Name: "user.a", Location: locA, Identity: "be1", Time: 10}}},
	{"reserved elsewhere", []Command{{Op: OpReserve, Name: "user.a", Location: locB, Identity: "be2", Time: 10}}},
	{"active here", []Command{{Op: OpActivate, Name: "user.a", Location: locA, ACL: aclA}}},
	{"active elsewhere", []Command{{Op: OpActivate, Name: "user.a", Location: locB, ACL: aclA}}},
}

func TestEveryCommandOverEveryPriorState(t *testing.T) {
	reserve := Command{Op: OpReserve, Name: "user.a", Location: locA, Identity: "murder", Time: 20}
	activate := Command{Op: OpActivate, Name: "user.a", Location: locA, ACL: "bob\tlr\t", Identity: "murder", Time: 20}
	deactivate := Command{Op: OpDeactivate, Name: "user.a", Location: locA, Identity: "murder", Time: 20}
	del := Command{Op: OpDelete, Name: "user.a", Identity: "murder", Time: 20}

	reservedAtA := &Entry{Name: "user.a", State: StateReserved, Location: locA, ReservedBy: "murder", ReservedAt: 20}
	activeAtA := &Entry{Name: "user.a", State: StateActive, Location: locA, ACL: "bob\tlr\t"}

	// want[i] is the outcome on priorStates[i]; nil entry means absent after.
	type outcome struct {
		code  Code
		entry *Entry // expected entry after (revisions filled in by the test)
		keep  bool   // entry unchanged
	}
	tests := []struct {
		cmd  Command
		want [5]outcome
	}{
		{reserve, [5]outcome{
			{CodeOK, reservedAtA, false},
			{CodeOK, reservedAtA, false},
			{CodeExists, nil, true},
			{CodeOK, reservedAtA, false}, // same location resets ACTIVE to RESERVED, ACL cleared
			{CodeExists, nil, true},
		}},
		{activate, [5]outcome{
			{CodeOK, activeAtA, false},
			{CodeOK, activeAtA, false},
			{CodeOK, activeAtA, false},
			{CodeOK, activeAtA, false},
			{CodeOK, activeAtA, false},
		}},
		{deactivate, [5]outcome{
			{CodeNotFound, nil, true},
			{CodeNotActive, nil, true},
			{CodeNotActive, nil, true},
			{CodeOK, reservedAtA, false},
			{CodeOK, reservedAtA, false}, // RESERVED at the location given in the command
		}},
		{del, [5]outcome{
			{CodeNotFound, nil, true},
			{CodeOK, nil, false},
			{CodeOK, nil, false},
			{CodeOK, nil, false},
			{CodeOK, nil, false},
		}},
	}
	for _, tc := range tests {
		for i, ps := range priorStates {
			want := tc.want[i]
			t.Run(tc.cmd.Op.String()+"/"+strings.ReplaceAll(ps.desc, " ", "_"), func(t *testing.T) {
				s := New(DefaultConfig())
				s.Apply(1, ps.setup)
				before, existed := s.Get("user.a")
				rev0 := s.Revision()

				rs := s.Apply(2, []Command{tc.cmd})
				if len(rs) != 1 || rs[0].Code != want.code {
					t.Fatalf("result %+v, want code %v", rs, want.code)
				}
				after, exists := s.Get("user.a")
				evs, err := s.EventsSince(rev0, 0)
				if err != nil {
					t.Fatal(err)
				}
				if s.AppliedIndex() != 2 {
					t.Fatalf("applied index %d, want 2", s.AppliedIndex())
				}

				if want.code != CodeOK {
					if rs[0].Revision != 0 || s.Revision() != rev0 || len(evs) != 0 {
						t.Fatalf("failed command changed state: rev %d->%d, result rev %d, %d events", rev0, s.Revision(), rs[0].Revision, len(evs))
					}
					if exists != existed || after != before {
						t.Fatalf("failed command changed entry: %+v -> %+v", before, after)
					}
					return
				}

				if rs[0].Revision != rev0+1 || s.Revision() != rev0+1 {
					t.Fatalf("revision: result %d store %d, want %d", rs[0].Revision, s.Revision(), rev0+1)
				}
				if len(evs) != 1 {
					t.Fatalf("got %d events, want 1", len(evs))
				}
				ev := evs[0]
				if ev.Revision != rev0+1 || ev.Op != tc.cmd.Op || ev.PrevLocation != before.Location {
					t.Fatalf("event %+v (prev location want %q)", ev, before.Location)
				}
				if want.entry == nil {
					if exists {
						t.Fatalf("entry still present: %+v", after)
					}
					if ev.Type != EventDelete || ev.Entry != before {
						t.Fatalf("delete event %+v, want removed entry %+v", ev, before)
					}
					return
				}
				exp := *want.entry
				exp.ModRevision = rev0 + 1
				exp.CreateRevision = rev0 + 1
				if existed {
					exp.CreateRevision = before.CreateRevision
				}
				if !exists || after != exp {
					t.Fatalf("entry\n got %+v\nwant %+v", after, exp)
				}
				if ev.Type != EventPut || ev.Entry != exp {
					t.Fatalf("event %+v, want put of %+v", ev, exp)
				}
			})
		}
	}
}

func TestApplyOfInvalidCommandAnswersInvalidAndChangesNothing(t *testing.T) {
	bad := []Command{
		{Op: 0, Name: "user.a"},
		{Op: 99, Name: "user.a"},
		{Op: OpReserve, Name: ""},
		{Op: OpReserve, Name: strings.Repeat("x", MaxNameLen+1)},
		{Op: OpReserve, Name: "user.a\x00"},
		{Op: OpReserve, Name: "user.a\r"},
		{Op: OpReserve, Name: "user.a\nb"},
		{Op: OpReserve, Name: "user\x1da"},
		{Op: OpReserve, Name: "user\x1fa"},
		{Op: OpActivate, Name: "user.a", Location: strings.Repeat("l", MaxLocationLen+1)},
		{Op: OpActivate, Name: "user.a", Location: "be1!\ndefault"},
		{Op: OpActivate, Name: "user.a", Location: locA, ACL: strings.Repeat("a", MaxACLLen+1)},
		{Op: OpActivate, Name: "user.a", Location: locA, ACL: "a\x00"},
		{Op: OpSetPeer, Name: "", Location: "127.0.0.1:1"},
		{Op: OpSetPeer, Name: "n1", Location: "127.0.0.1:1\r"},
	}
	s := New(DefaultConfig())
	s.Apply(1, []Command{{Op: OpActivate, Name: "user.a", Location: locB, ACL: aclA}})
	before := s.Snapshot()
	for _, c := range bad {
		if err := Validate(c); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidCommand", c, err)
		}
		rs := s.Apply(2, []Command{c})
		if rs[0] != (Result{Code: CodeInvalid}) {
			t.Errorf("Apply(%+v) = %+v, want CodeInvalid", c, rs[0])
		}
	}
	if s.Revision() != 1 || len(s.Peers()) != 0 {
		t.Fatalf("invalid commands changed state: revision %d, peers %v", s.Revision(), s.Peers())
	}
	if e, _ := s.Get("user.a"); e.Location != locB || e.ACL != aclA {
		t.Fatalf("entry changed: %+v", e)
	}
	if !snapshotBytesEqual(t, before, s.Snapshot(), true) {
		t.Fatal("snapshot differs after invalid commands (beyond applied index)")
	}
}

func TestValidateAcceptsCyrusNamesAndLimits(t *testing.T) {
	good := []Command{
		{Op: OpReserve, Name: "user.alice.Sent", Location: "be1!default"},
		{Op: OpReserve, Name: "example.com!user.bob", Location: "be2!"},
		{Op: OpActivate, Name: "DELETED.user.x.Trash.65E33B49", Location: "a!b!c", ACL: "anyone\tp\t"},
		{Op: OpActivate, Name: strings.Repeat("x", MaxNameLen), Location: strings.Repeat("l", MaxLocationLen), ACL: strings.Repeat("a", MaxACLLen)},
		{Op: OpActivate, Name: "user.&AOk-", Location: "localhost:12345!default"},
		{Op: OpDelete, Name: "x"},
		{Op: OpSetPeer, Name: "node-1", Location: ""},
	}
	for _, c := range good {
		if err := Validate(c); err != nil {
			t.Errorf("Validate(%+v) = %v", c.Name, err)
		}
	}
}

func TestSetPeerRecordsAndRemovesAddressWithoutEvent(t *testing.T) {
	s := New(DefaultConfig())
	rs := s.Apply(1, []Command{
		{Op: OpSetPeer, Name: "n1", Location: "127.0.0.1:7001"},
		{Op: OpSetPeer, Name: "n2", Location: "127.0.0.1:7002"},
		{Op: OpSetPeer, Name: "n1", Location: "127.0.0.1:7011"},
	})
	for _, r := range rs {
		if r != (Result{Code: CodeOK}) {
			t.Fatalf("result %+v, want OK revision 0", r)
		}
	}
	if got := s.Peers(); len(got) != 2 || got["n1"] != "127.0.0.1:7011" || got["n2"] != "127.0.0.1:7002" {
		t.Fatalf("peers %v", got)
	}
	s.Apply(2, []Command{{Op: OpSetPeer, Name: "n2"}})
	if got := s.Peers(); len(got) != 1 || got["n1"] == "" {
		t.Fatalf("peers after removal %v", got)
	}
	if s.Revision() != 0 || s.View().Len() != 0 || s.AppliedIndex() != 2 {
		t.Fatalf("peer bookkeeping touched mailboxes: revision %d len %d", s.Revision(), s.View().Len())
	}
	if evs, err := s.EventsSince(0, 0); err != nil || len(evs) != 0 {
		t.Fatalf("events %v %v", evs, err)
	}
}

func TestBatchGetsDenseRevisionsAndOneAppliedIndex(t *testing.T) {
	s := New(DefaultConfig())
	ch := s.Changed()
	rs := s.Apply(7, []Command{
		{Op: OpReserve, Name: "user.a", Location: locA},
		{Op: OpReserve, Name: "user.a", Location: locB}, // exists elsewhere
		{Op: OpActivate, Name: "user.a", Location: locA, ACL: aclA},
		{Op: OpSetPeer, Name: "n1", Location: "127.0.0.1:1"},
		{Op: OpActivate, Name: "user.b", Location: locB},
	})
	want := []Result{{CodeOK, 1}, {CodeExists, 0}, {CodeOK, 2}, {CodeOK, 0}, {CodeOK, 3}}
	for i := range want {
		if rs[i] != want[i] {
			t.Fatalf("results %+v, want %+v", rs, want)
		}
	}
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed by Apply")
	}
	if s.AppliedIndex() != 7 || s.Revision() != 3 {
		t.Fatalf("applied %d revision %d", s.AppliedIndex(), s.Revision())
	}
	e, _ := s.Get("user.a")
	if e.CreateRevision != 1 || e.ModRevision != 2 {
		t.Fatalf("entry revisions %+v", e)
	}
	// An Apply that does not advance the index does not signal.
	ch = s.Changed()
	s.Apply(7, nil)
	select {
	case <-ch:
		t.Fatal("Changed closed without index advance")
	default:
	}
}
