package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
)

func put(rev uint64, name, loc string, st fsm.State) fsm.Event {
	return fsm.Event{Revision: rev, Type: fsm.EventPut, Entry: fsm.Entry{Name: name, Location: loc, State: st, ModRevision: rev}}
}

func del(rev uint64, name string) fsm.Event {
	return fsm.Event{Revision: rev, Type: fsm.EventDelete, Entry: fsm.Entry{Name: name}}
}

func TestReplicaAppliesEventsInOrderAndSkipsReplays(t *testing.T) {
	r := NewReplica(DefaultReplicaConfig())
	if r.Ready() {
		t.Fatal("a new replica must not be ready")
	}
	r.Reset([]fsm.Entry{{Name: "user.alice", Location: "be1!default", State: fsm.StateActive}}, 10)
	r.Apply([]fsm.Event{
		put(11, "user.bob", "be2!default", fsm.StateReserved),
		put(12, "user.bob", "be2!default", fsm.StateActive),
		put(13, "user.alice", "be2!", fsm.StateActive), // moved
		del(14, "user.bob"),
	})
	// A resumed feed replays 12..15; only 15 is new.
	r.Apply([]fsm.Event{put(12, "user.bob", "be2!default", fsm.StateActive), put(15, "user.carol", "be1!default", fsm.StateActive)})
	if r.Revision() != 15 {
		t.Fatalf("Revision = %d, want 15", r.Revision())
	}
	if e, ok := r.Lookup("user.alice"); !ok || e.Location != "be2!" || e.Server() != "be2" {
		t.Fatalf("alice = %+v %v", e, ok)
	}
	if _, ok := r.Lookup("user.bob"); ok {
		t.Fatal("bob was deleted at 14 and must stay deleted after the replay of 12")
	}
	if e, ok := r.Lookup("user.carol"); !ok || e.State != fsm.StateActive || e.ModRevision != 15 {
		t.Fatalf("carol = %+v %v", e, ok)
	}
}

func TestReplicaKeepsOnlyRoutableNamesByDefault(t *testing.T) {
	r := NewReplica(DefaultReplicaConfig())
	names := []string{"user.alice", "user.alice.Sent", "example.com!user.bob", "example.com!user.bob.Trash",
		"shared.news", "DELETED.user.x.65E33B49", "example.com!DELETED.user.y.1"}
	var entries []fsm.Entry
	for _, n := range names {
		entries = append(entries, fsm.Entry{Name: n, Location: "be1!default", State: fsm.StateActive})
	}
	r.Reset(entries, 1)
	var kept []string
	for _, n := range names {
		if _, ok := r.Lookup(n); ok {
			kept = append(kept, n)
		}
	}
	if got, want := strings.Join(kept, " "), "user.alice example.com!user.bob shared.news"; got != want {
		t.Fatalf("kept %q, want %q", got, want)
	}
	// Revisions still advance for names that are not kept.
	r.Apply([]fsm.Event{put(2, "user.alice.Drafts", "be1!default", fsm.StateActive)})
	if r.Revision() != 2 || r.Stats().Entries != 3 {
		t.Fatalf("revision %d entries %d", r.Revision(), r.Stats().Entries)
	}
}

func TestReplicaInternsLocations(t *testing.T) {
	r := NewReplica(DefaultReplicaConfig())
	loc1 := strings.Repeat("be1!default", 1)
	loc2 := strings.Clone(loc1)
	r.Reset([]fsm.Entry{{Name: "user.a", Location: loc1}, {Name: "user.b", Location: loc2}}, 1)
	a, _ := r.Lookup("user.a")
	b, _ := r.Lookup("user.b")
	if len(r.locations) != 1 || a.Location != b.Location {
		t.Fatalf("locations not interned: %d distinct", len(r.locations))
	}
}

func TestReplicaReportsLag(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewReplica(ReplicaConfig{Now: func() time.Time { return now }})
	if s := r.Stats(); s.SinceContact != 0 || s.LagRevisions != 0 {
		t.Fatalf("fresh stats %+v", s)
	}
	r.Reset(nil, 100)
	r.SetReady(true)
	r.ObserveHead(130)
	now = now.Add(7 * time.Second)
	s := r.Stats()
	if s.Revision != 100 || s.HeadRevision != 130 || s.LagRevisions != 30 || !s.Ready || s.SinceContact != 7*time.Second {
		t.Fatalf("stats %+v", s)
	}
	r.Apply([]fsm.Event{put(130, "user.z", "be1!", fsm.StateActive)})
	if s := r.Stats(); s.LagRevisions != 0 || s.SinceContact != 0 {
		t.Fatalf("after catching up: %+v", s)
	}
}

func TestParseStaticDirectory(t *testing.T) {
	in := "# comment\n\nuser.alice be1!default\nexample.com!user.bob be2!default active\nuser.carol be1! RESERVED\n"
	got, err := ParseStaticDirectory(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []fsm.Entry{
		{Name: "user.alice", Location: "be1!default", State: fsm.StateActive},
		{Name: "example.com!user.bob", Location: "be2!default", State: fsm.StateActive},
		{Name: "user.carol", Location: "be1!", State: fsm.StateReserved},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"user.x\n", "user.x be1! GONE\n", "a b c d\n"} {
		if _, err := ParseStaticDirectory(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}
