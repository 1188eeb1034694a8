package jepsen

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/rookery/rookery/fsm"
)

// mk builds an op for the model tests: kind name [loc [acl]] over
// [inv, comp] with an outcome/code or read result.
func mk(kind Kind, name, loc, acl string, inv, comp int64) Op {
	return Op{Proto: "grpc", Kind: kind, Name: name, Loc: loc, ACL: acl, Invoke: inv, Complete: comp, Outcome: OK}
}

func (o Op) code(c Code) Op {
	if c != CodeOK {
		o.Outcome, o.Code = Fail, c
	}
	return o
}

func (o Op) unknown() Op { o.Outcome, o.Complete = Unknown, math.MaxInt64; return o }

func (o Op) reads(state, loc, acl string) Op {
	o.Found, o.State, o.RLoc, o.RACL = state != "", state, loc, acl
	return o
}

func TestDirectoryModel(t *testing.T) {
	const a, b = "user.a", "user.b"
	const l1, l2 = "be1!default", "be2!default"
	const acl = "a\tlrs\t"
	tests := []struct {
		name string
		ops  []Op
		want porcupine.CheckResult
	}{
		{"the Cyrus command semantics in sequence", []Op{
			mk(KindReserve, a, l1, "", 0, 1),
			mk(KindReserve, a, l2, "", 2, 3).code(CodeExists),
			mk(KindReserve, a, l1, "", 4, 5), // same location: accepted
			mk(KindActivate, a, l1, acl, 6, 7),
			mk(KindGet, a, "", "", 8, 9).reads(StateActive, l1, acl),
			mk(KindReserve, a, l1, "", 10, 11), // resets an ACTIVE entry, ACL cleared
			mk(KindGet, a, "", "", 12, 13).reads(StateReserved, l1, ""),
			mk(KindDeactivate, a, l2, "", 14, 15).code(CodeNotActive),
			mk(KindActivate, a, l1, acl, 16, 17),
			mk(KindDeactivate, a, l2, "", 18, 19), // a move: RESERVED at the target
			mk(KindGet, a, "", "", 20, 21).reads(StateReserved, l2, ""),
			mk(KindDelete, a, "", "", 22, 23),
			mk(KindDelete, a, "", "", 24, 25).code(CodeNotFound),
			mk(KindDeactivate, a, l1, "", 26, 27).code(CodeNotFound),
			mk(KindGet, a, "", "", 28, 29).reads("", "", ""),
		}, porcupine.Ok},
		{"a read that misses an acknowledged write", []Op{
			mk(KindActivate, a, l1, acl, 0, 10),
			mk(KindGet, a, "", "", 20, 30).reads("", "", ""),
		}, porcupine.Illegal},
		{"two RESERVEs at different locations both succeed", []Op{
			mk(KindReserve, a, l1, "", 0, 10),
			mk(KindReserve, a, l2, "", 20, 30),
		}, porcupine.Illegal},
		{"concurrent RESERVEs: one wins, one is refused", []Op{
			mk(KindReserve, a, l1, "", 0, 10),
			mk(KindReserve, a, l2, "", 0, 10).code(CodeExists),
			mk(KindGet, a, "", "", 20, 30).reads(StateReserved, l1, ""),
		}, porcupine.Ok},
		{"a write of unknown outcome may have happened", []Op{
			mk(KindActivate, a, l1, acl, 0, 10).unknown(),
			mk(KindGet, a, "", "", 20, 30).reads(StateActive, l1, acl),
		}, porcupine.Ok},
		{"a write of unknown outcome may never happen", []Op{
			mk(KindActivate, a, l1, acl, 0, 10).unknown(),
			mk(KindGet, a, "", "", 20, 30).reads("", "", ""),
		}, porcupine.Ok},
		{"a write of unknown outcome cannot be undone once seen", []Op{
			mk(KindActivate, a, l1, acl, 0, 10).unknown(),
			mk(KindGet, a, "", "", 20, 30).reads(StateActive, l1, acl),
			mk(KindGet, a, "", "", 40, 50).reads("", "", ""),
		}, porcupine.Illegal},
		{"names are independent", []Op{
			mk(KindReserve, a, l1, "", 0, 10),
			mk(KindReserve, b, l2, "", 0, 10),
			mk(KindGet, b, "", "", 20, 30).reads(StateReserved, l2, ""),
			mk(KindGet, a, "", "", 20, 30).reads(StateReserved, l1, ""),
		}, porcupine.Ok},
		{"failed reads are not checked", []Op{
			mk(KindActivate, a, l1, acl, 0, 10),
			func() Op { o := mk(KindGet, a, "", "", 20, 30); o.Outcome = Fail; return o }(),
		}, porcupine.Ok},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.ops {
				tc.ops[i].ID = i
			}
			got := porcupine.CheckOperationsTimeout(DirectoryModel(), porcupineOps(tc.ops), 10*time.Second)
			if got != tc.want {
				t.Fatalf("porcupine = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestModelAgreesWithTheStateMachine drives the model and the real fsm
// with the same random commands: a model that disagreed with the directory
// would report anomalies that are not there, or miss real ones.
func TestModelAgreesWithTheStateMachine(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	store := fsm.New(fsm.DefaultConfig())
	model := map[string]mailbox{}
	w := DefaultWorkload()
	for i := 0; i < 5000; i++ {
		in := w.next(rng)
		if in.Kind == KindGet {
			continue
		}
		cmd := fsm.Command{Name: in.Name, Location: in.Loc, ACL: in.ACL, Identity: "jepsen", Time: int64(i)}
		switch in.Kind {
		case KindReserve:
			cmd.Op = fsm.OpReserve
		case KindActivate:
			cmd.Op = fsm.OpActivate
		case KindDeactivate:
			cmd.Op = fsm.OpDeactivate
			cmd.ACL = ""
		case KindDelete:
			cmd.Op = fsm.OpDelete
			cmd.Location, cmd.ACL = "", ""
		}
		res := store.Apply(uint64(i+1), []fsm.Command{cmd})
		code, next := decide(model[in.Name], in)
		if got := codeOfFSM(res[0].Code); got != code {
			t.Fatalf("step %d %+v on %s: fsm says %s, model %s", i, in, model[in.Name], got, code)
		}
		if code == CodeOK {
			model[in.Name] = next
		}
		if !next.exists() {
			delete(model, in.Name)
		}
		e, ok := store.Get(in.Name)
		got := mailbox{}
		if ok {
			got = mailbox{State: strings.ToLower(e.State.String()), Loc: e.Location, ACL: e.ACL}
		}
		if got != model[in.Name] {
			t.Fatalf("step %d %+v: fsm holds %s, model %s", i, in, got, model[in.Name])
		}
	}
}

func codeOfFSM(c fsm.Code) Code {
	switch c {
	case fsm.CodeOK:
		return CodeOK
	case fsm.CodeExists:
		return CodeExists
	case fsm.CodeNotFound:
		return CodeNotFound
	case fsm.CodeNotActive:
		return CodeNotActive
	}
	return Code("invalid")
}
