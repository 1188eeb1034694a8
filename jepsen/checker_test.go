package jepsen

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// simulate runs n random operations one after another against a correct
// directory, alternating gRPC and MUPDATE clients, and returns what a run
// would observe: the history, two complete Watch streams, one UPDATE
// stream with NOOP barriers, and every node's final state.
func simulate(n int) Observations {
	rng := rand.New(rand.NewPCG(7, 9))
	w := DefaultWorkload()
	state := map[string]mailbox{}
	created := map[string]uint64{}
	var obs Observations
	var events []Event
	var items []UpdateItem
	var rev, acked uint64
	t := int64(0)
	for i := 0; i < n; i++ {
		in := w.next(rng)
		op := Op{ID: i, Process: i % 4, Proto: "grpc", Node: "n1", Kind: in.Kind, Name: in.Name, Loc: in.Loc, ACL: in.ACL,
			Invoke: t, Complete: t + 5, Outcome: OK}
		if i%2 == 1 {
			op.Proto = "mupdate"
		}
		t += 10
		s := state[in.Name]
		if in.Kind == KindGet {
			op.Found, op.State, op.RLoc, op.RACL = s.exists(), s.State, s.Loc, s.ACL
			if op.Proto == "grpc" {
				op.Revision = rev
			}
			obs.Ops = append(obs.Ops, op)
			continue
		}
		code, next := decide(s, in)
		if code != CodeOK {
			op.Outcome, op.Code = Fail, code
			obs.Ops = append(obs.Ops, op)
			continue
		}
		rev++
		e := Event{Revision: rev, Op: in.Kind, Name: in.Name}
		if in.Kind == KindDelete {
			e.Delete, e.State, e.Loc, e.ACL = true, s.State, s.Loc, s.ACL
			e.CreateRevision, e.ModRevision = created[in.Name], rev-1
			delete(state, in.Name)
			items = append(items, UpdateItem{Kind: "delete", Name: in.Name})
		} else {
			if !s.exists() {
				created[in.Name] = rev
			}
			e.State, e.Loc, e.ACL = next.State, next.Loc, next.ACL
			e.CreateRevision, e.ModRevision, e.PrevLoc = created[in.Name], rev, s.Loc
			state[in.Name] = next
			kind := "mailbox"
			if next.State == StateReserved {
				kind = "reserve"
			}
			items = append(items, UpdateItem{Kind: kind, Name: in.Name, Loc: next.Loc, ACL: next.ACL})
		}
		events = append(events, e)
		if op.Proto == "grpc" {
			op.Revision = rev
			acked = rev
		}
		obs.Ops = append(obs.Ops, op)
		if i%7 == 0 {
			items = append(items, UpdateItem{Kind: "noop", Acked: acked, SentAt: t, OKAt: t + 1})
		}
	}
	items = append(items, UpdateItem{Kind: "noop", Acked: rev, FinalRev: rev})
	obs.FinalRevision = rev
	for _, node := range []string{"n1", "n2"} {
		obs.Watches = append(obs.Watches, WatchSession{Watcher: "watch-" + node, Node: node, Events: append([]Event(nil), events...)})
		fs := NodeState{Node: node, Revision: rev}
		for name, m := range state {
			fs.Entries = append(fs.Entries, Mailbox{Name: name, State: m.State, Loc: m.Loc, ACL: m.ACL})
		}
		obs.Final = append(obs.Final, fs)
	}
	obs.Updates = []UpdateSession{{Streamer: "update-n1", Node: "n1", Items: items}}
	return obs
}

func TestCheckerAcceptsACorrectRun(t *testing.T) {
	r := Check(simulate(400), DefaultCheckConfig())
	if !r.Valid() {
		t.Fatalf("a correct run was rejected: %s\n%+v", r.Summary(), r.Anomalies)
	}
	if r.Barriers == 0 || r.WatchEvents == 0 || r.UpdateLines == 0 || r.Revisions == 0 {
		t.Fatalf("the simulated run exercised nothing: %s", r.Summary())
	}
}

// TestCheckerFindsEachAnomaly breaks a correct run in one way at a time
// and expects the checker to name exactly that kind of anomaly.
func TestCheckerFindsEachAnomaly(t *testing.T) {
	firstOp := func(obs *Observations, pred func(*Op) bool) *Op {
		for i := range obs.Ops {
			if pred(&obs.Ops[i]) {
				return &obs.Ops[i]
			}
		}
		t.Fatal("no op matches")
		return nil
	}
	ackedGRPCWrite := func(o *Op) bool { return o.Proto == "grpc" && o.Outcome == OK && o.Kind.IsWrite() }
	tests := []struct {
		name   string
		break_ func(*Observations)
		want   string
	}{
		{"a Watch stream skips a revision", func(obs *Observations) {
			ev := obs.Watches[0].Events
			obs.Watches[0].Events = append(ev[:10:10], ev[11:]...)
		}, AnomalyWatchGap},
		{"a Watch stream repeats a revision", func(obs *Observations) {
			ev := obs.Watches[1].Events
			obs.Watches[1].Events = append(append(ev[:10:10], ev[9]), ev[10:]...)
		}, AnomalyWatchDup},
		{"a Watch stream stops short of the final revision", func(obs *Observations) {
			ev := obs.Watches[1].Events
			obs.Watches[1].Events = ev[:len(ev)-1]
		}, AnomalyWatchLag},
		{"two streams disagree on a revision", func(obs *Observations) {
			obs.Watches[1].Events[5].Loc = "elsewhere!x"
		}, AnomalyLogDivergence},
		{"an acknowledged gRPC write is not at its revision", func(obs *Observations) {
			op := firstOp(obs, ackedGRPCWrite)
			for i := range obs.Watches {
				obs.Watches[i].Events[op.Revision-1].Name = "user.other"
			}
		}, AnomalyLostWrite},
		{"an acknowledged MUPDATE write has no change in the log", func(obs *Observations) {
			obs.Ops = append(obs.Ops, Op{ID: len(obs.Ops), Proto: "mupdate", Kind: KindActivate, Name: "user.nobody",
				Loc: "be9!x", ACL: "x\tl\t", Invoke: 1, Complete: 2, Outcome: OK})
		}, AnomalyLostWrite},
		{"two acknowledged writes share a revision", func(obs *Observations) {
			op := firstOp(obs, ackedGRPCWrite)
			dup := *op
			dup.ID = len(obs.Ops)
			obs.Ops = append(obs.Ops, dup)
		}, AnomalyDuplicateRevision},
		{"a read is served at a revision older than an acknowledged write", func(obs *Observations) {
			last := &obs.Ops[len(obs.Ops)-1]
			obs.Ops = append(obs.Ops, Op{ID: len(obs.Ops), Proto: "grpc", Node: "n3", Kind: KindGet, Name: "user.jepsen0",
				Invoke: last.Complete + 100, Complete: last.Complete + 200, Outcome: OK, Revision: 1})
		}, AnomalyStaleRead},
		{"a NOOP is answered before an acknowledged write reached the stream", func(obs *Observations) {
			items := obs.Updates[0].Items
			for i := range items {
				if items[i].Kind == "noop" && items[i].Acked > 0 {
					items[i].Acked += 3
					return
				}
			}
		}, AnomalyUpdateBarrier},
		{"an UPDATE stream loses a change", func(obs *Observations) {
			items := obs.Updates[0].Items
			for i := range items {
				if items[i].Kind != "noop" {
					obs.Updates[0].Items = append(items[:i:i], items[i+1:]...)
					return
				}
			}
		}, AnomalyUpdateMismatch},
		{"a node ends with a different directory", func(obs *Observations) {
			obs.Final[1].Entries = append(obs.Final[1].Entries, Mailbox{Name: "user.ghost", State: StateActive, Loc: "be1!default"})
		}, AnomalyNodeDivergence},
		{"a node does not recover", func(obs *Observations) {
			obs.Final[0].Revision--
		}, AnomalyNotRecovered},
		{"the log holds a RESERVE the semantics refuse", func(obs *Observations) {
			for i := range obs.Watches {
				ev := obs.Watches[i].Events
				for j := range ev {
					if ev[j].Op == KindReserve && ev[j].PrevLoc != "" {
						ev[j].Loc = "be9!elsewhere"
						break
					}
				}
			}
		}, AnomalyInvalidTransition},
		{"a node answers with an internal error", func(obs *Observations) {
			obs.Ops = append(obs.Ops, Op{ID: len(obs.Ops), Proto: "grpc", Kind: KindActivate, Name: "user.x", Loc: "be1!default",
				Invoke: 1, Complete: 2, Outcome: Unknown, ServerError: true, Err: "rpc error: code = Internal"})
		}, AnomalyServerError},
		{"two RESERVEs at different locations both succeed", func(obs *Observations) {
			base := obs.Ops[len(obs.Ops)-1].Complete + 1000
			obs.Ops = append(obs.Ops,
				Op{ID: len(obs.Ops), Proto: "mupdate", Kind: KindReserve, Name: "user.x", Loc: "be1!default", Invoke: base, Complete: base + 10, Outcome: OK},
				Op{ID: len(obs.Ops) + 1, Proto: "mupdate", Kind: KindReserve, Name: "user.x", Loc: "be2!default", Invoke: base + 20, Complete: base + 30, Outcome: OK})
		}, AnomalyDoubleReserve},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obs := simulate(400)
			tc.break_(&obs)
			cfg := DefaultCheckConfig()
			cfg.LinearizabilityTimeout = 20 * time.Second
			r := Check(obs, cfg)
			if r.Counts[tc.want] == 0 {
				t.Fatalf("no %s anomaly: %s\n%+v", tc.want, r.Summary(), r.Anomalies)
			}
			if r.Valid() {
				t.Fatal("report says valid")
			}
		})
	}
}

func TestCheckerAllowsARESERVEAfterTheNameWasFreed(t *testing.T) {
	ops := []Op{
		{ID: 0, Proto: "grpc", Kind: KindReserve, Name: "user.x", Loc: "be1!default", Invoke: 0, Complete: 10, Outcome: OK},
		{ID: 1, Proto: "mupdate", Kind: KindDelete, Name: "user.x", Invoke: 5, Complete: 30, Outcome: Unknown},
		{ID: 2, Proto: "grpc", Kind: KindReserve, Name: "user.x", Loc: "be2!default", Invoke: 40, Complete: 50, Outcome: OK},
		{ID: 3, Proto: "grpc", Kind: KindActivate, Name: "user.y", Loc: "be2!default", ACL: "a\tl\t", Invoke: 0, Complete: 10, Outcome: OK},
		{ID: 4, Proto: "grpc", Kind: KindReserve, Name: "user.y", Loc: "be2!default", Invoke: 20, Complete: 30, Outcome: OK},
		{ID: 5, Proto: "grpc", Kind: KindReserve, Name: "user.y", Loc: "be2!default", Invoke: 40, Complete: 50, Outcome: OK},
		// A DELETE whose client gave up (at 5) before both RESERVEs still
		// takes effect later: its request was held in a partition and
		// reached the leader when it healed (CI, Dec 4, ops 1956, 1984, 2003).
		{ID: 6, Proto: "mupdate", Kind: KindDelete, Name: "user.z", Invoke: 0, Complete: 5, Outcome: Unknown},
		{ID: 7, Proto: "grpc", Kind: KindReserve, Name: "user.z", Loc: "be1!default", Invoke: 10, Complete: 20, Outcome: OK},
		{ID: 8, Proto: "grpc", Kind: KindReserve, Name: "user.z", Loc: "be2!default", Invoke: 30, Complete: 40, Outcome: OK},
	}
	c := &checker{cfg: DefaultCheckConfig(), r: &Report{Counts: map[string]int{}}, obs: Observations{Ops: ops}}
	c.checkReservations()
	if n := c.r.Counts[AnomalyDoubleReserve]; n != 0 {
		t.Fatalf("double-reserve reported for legal histories: %+v", c.r.Anomalies)
	}
	if got := porcupine.CheckOperations(DirectoryModel(), porcupineOps(ops)); !got {
		t.Fatal("porcupine rejects the same legal history")
	}
}
