package jepsen

import (
	"fmt"
	"hash/fnv"
	"math"
	"sort"

	"github.com/anishathalye/porcupine"
)

// mailbox is the model's state of one name: absent (State == ""), or an
// entry RESERVED or ACTIVE at Loc with ACL.
type mailbox struct {
	State string
	Loc   string
	ACL   string
}

func (m mailbox) exists() bool { return m.State != "" }

func (m mailbox) String() string {
	if !m.exists() {
		return "absent"
	}
	if m.State == StateReserved {
		return "RESERVED " + m.Loc
	}
	return fmt.Sprintf("ACTIVE %s %q", m.Loc, m.ACL)
}

// modelInput is a directory command or a read of one name.
type modelInput struct {
	Kind Kind
	Name string
	Loc  string
	ACL  string
}

// modelOutput is what the client saw. Unknown: a write whose effect is
// not known.
type modelOutput struct {
	Unknown bool
	Code    Code
	Read    mailbox // for reads; zero = absent
}

// decide is the Cyrus standard-mode semantics of one command
// (docs/mupdate.md §5, as fsm.decide implements them, written again
// here so a bug there is not copied): the verdict, and the state after.
func decide(s mailbox, in modelInput) (Code, mailbox) {
	switch in.Kind {
	case KindReserve:
		// A name held at another location is refused; at the same
		// location the entry is reset to RESERVED with its ACL cleared.
		if s.exists() && s.Loc != in.Loc {
			return CodeExists, s
		}
		return CodeOK, mailbox{State: StateReserved, Loc: in.Loc}
	case KindActivate:
		return CodeOK, mailbox{State: StateActive, Loc: in.Loc, ACL: in.ACL}
	case KindDeactivate:
		switch {
		case !s.exists():
			return CodeNotFound, s
		case s.State != StateActive:
			return CodeNotActive, s
		}
		return CodeOK, mailbox{State: StateReserved, Loc: in.Loc}
	case KindDelete:
		if !s.exists() {
			return CodeNotFound, s
		}
		return CodeOK, mailbox{}
	}
	return CodeNone, s
}

// DirectoryModel is the porcupine model of the directory, partitioned by
// mailbox name: each name is an independent register with the MUPDATE
// command semantics. A write with an unknown outcome is accepted in any
// state and applied as the directory would have applied it; since its
// return time is open, porcupine may also place it after every other
// operation, which is the same as it never having happened.
func DirectoryModel() porcupine.Model {
	return porcupine.Model{
		Partition: partitionByName,
		Init:      func() any { return mailbox{} },
		Step: func(state, input, output any) (bool, any) {
			s, in, out := state.(mailbox), input.(modelInput), output.(modelOutput)
			if in.Kind == KindGet {
				return out.Read == s, s
			}
			code, next := decide(s, in)
			if out.Unknown {
				return true, next
			}
			return out.Code == code, next
		},
		Equal: func(a, b any) bool { return a.(mailbox) == b.(mailbox) },
		Hash: func(state any) uint64 {
			s := state.(mailbox)
			h := fnv.New64a()
			fmt.Fprintf(h, "%s\x00%s\x00%s", s.State, s.Loc, s.ACL)
			return h.Sum64()
		},
		DescribeOperation: describeOp,
		DescribeState:     func(state any) string { return state.(mailbox).String() },
	}
}

func partitionByName(history []porcupine.Operation) [][]porcupine.Operation {
	byName := map[string][]porcupine.Operation{}
	var names []string
	for _, op := range history {
		n := op.Input.(modelInput).Name
		if _, ok := byName[n]; !ok {
			names = append(names, n)
		}
		byName[n] = append(byName[n], op)
	}
	sort.Strings(names)
	out := make([][]porcupine.Operation, 0, len(names))
	for _, n := range names {
		out = append(out, byName[n])
	}
	return out
}

func describeOp(input, output any) string {
	in, out := input.(modelInput), output.(modelOutput)
	var call string
	switch in.Kind {
	case KindReserve, KindDeactivate:
		call = fmt.Sprintf("%s(%s, %s)", in.Kind, in.Name, in.Loc)
	case KindActivate:
		call = fmt.Sprintf("activate(%s, %s, %q)", in.Name, in.Loc, in.ACL)
	default:
		call = fmt.Sprintf("%s(%s)", in.Kind, in.Name)
	}
	switch {
	case out.Unknown:
		return call + " -> ?"
	case in.Kind == KindGet:
		return call + " -> " + out.Read.String()
	}
	return call + " -> " + string(out.Code)
}

// porcupineOps converts the checked ops of a history. An unknown write
// returns at +inf: it may take effect at any point after its invocation.
func porcupineOps(ops []Op) []porcupine.Operation {
	out := make([]porcupine.Operation, 0, len(ops))
	for i := range ops {
		op := &ops[i]
		if !op.Checked() {
			continue
		}
		in := modelInput{Kind: op.Kind, Name: op.Name, Loc: op.Loc, ACL: op.ACL}
		var o modelOutput
		ret := op.Complete
		switch {
		case op.Outcome == Unknown:
			o.Unknown = true
			ret = math.MaxInt64
		case op.Kind == KindGet:
			if op.Found {
				o.Read = mailbox{State: op.State, Loc: op.RLoc, ACL: op.RACL}
			}
		case op.Outcome == OK:
			o.Code = CodeOK
		default:
			o.Code = op.Code
		}
		out = append(out, porcupine.Operation{
			ClientId: op.Process,
			Input:    in,
			Call:     op.Invoke,
			Output:   o,
			Return:   ret,
			Metadata: op.ID,
		})
	}
	return out
}
