package jepsen

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is a directory operation.
type Kind string

const (
	KindReserve    Kind = "reserve"
	KindActivate   Kind = "activate"
	KindDeactivate Kind = "deactivate"
	KindDelete     Kind = "delete"
	// KindGet is a read of one name: gRPC Get or MUPDATE FIND.
	KindGet Kind = "get"
)

// IsWrite reports whether the kind changes the directory.
func (k Kind) IsWrite() bool { return k != KindGet }

// Outcome is what the client learnt about an operation.
type Outcome string

const (
	// OK: the operation took effect (a write was committed, a read
	// returned a value).
	OK Outcome = "ok"
	// Fail: the operation certainly did not change the directory. A write
	// refused by the directory's rules carries its Code and still says
	// something about the state it was checked against; other failures
	// (a read that could not be served, an authorisation error) say
	// nothing and are left out of the linearizability check.
	Fail Outcome = "fail"
	// Unknown: the write may or may not have been applied (timeout, lost
	// connection, no quorum). It is checked as possibly applied at any
	// point after its invocation.
	Unknown Outcome = "unknown"
)

// Code is the directory's verdict on a write, as MUPDATE and gRPC report it.
type Code string

const (
	CodeNone      Code = ""
	CodeOK        Code = "ok"
	CodeExists    Code = "exists"     // RESERVE of a name held at another location
	CodeNotFound  Code = "not-found"  // DEACTIVATE/DELETE of a missing name
	CodeNotActive Code = "not-active" // DEACTIVATE of an entry that is not ACTIVE
)

// Entry states as the history records them.
const (
	StateReserved = "reserved"
	StateActive   = "active"
)

// Op is one client operation: its invocation, and once it completes, what
// the client saw. Times are nanoseconds on the run's monotonic clock.
type Op struct {
	ID      int    `json:"id"`
	Process int    `json:"process"` // a client process; retired after an unknown outcome
	Proto   string `json:"proto"`   // grpc or mupdate
	Node    string `json:"node"`    // node the client talked to
	Kind    Kind   `json:"kind"`
	Name    string `json:"name"`
	Loc     string `json:"loc,omitempty"`
	ACL     string `json:"acl,omitempty"`

	Invoke   int64   `json:"invoke_ns"`
	Complete int64   `json:"complete_ns"`
	Outcome  Outcome `json:"outcome"`
	Code     Code    `json:"code,omitempty"`
	// Read results.
	Found bool   `json:"found,omitempty"`
	State string `json:"state,omitempty"`
	RLoc  string `json:"result_loc,omitempty"`
	RACL  string `json:"result_acl,omitempty"`
	// Revision: for a gRPC write, the revision it committed at; for a gRPC
	// read, the revision of the state it was served from.
	Revision uint64 `json:"revision,omitempty"`
	// Stale marks a read served without the linearizable barrier (the
	// deliberately unsafe mode) although it is checked as linearizable.
	Stale       bool   `json:"stale,omitempty"`
	ServerError bool   `json:"server_error,omitempty"`
	Final       bool   `json:"final,omitempty"` // a read made after the faults healed
	Err         string `json:"error,omitempty"`
}

// Checked reports whether the op takes part in the linearizability check:
// every ok op, unknown writes, and writes the directory refused with a code.
func (o *Op) Checked() bool {
	switch o.Outcome {
	case OK:
		return true
	case Unknown:
		return o.Kind.IsWrite()
	case Fail:
		return o.Kind.IsWrite() && o.Code != CodeNone
	}
	return false
}

// Fault is one nemesis action, kept with the history and drawn on the
// linearizability visualisation.
type Fault struct {
	Nemesis string `json:"nemesis"`
	Desc    string `json:"desc"`
	Start   int64  `json:"start_ns"`
	End     int64  `json:"end_ns"`
	Err     string `json:"error,omitempty"`
}

// History records operations and faults as they happen. It is safe for
// concurrent use.
type History struct {
	start time.Time

	mu     sync.Mutex
	ops    []*Op
	faults []*Fault
	nextPr int

	// maxAcked is the highest revision of an acknowledged gRPC write, as
	// of now: what a NOOP barrier sent now must cover.
	maxAcked atomic.Uint64
}

// NewHistory starts the run's clock.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the run's monotonic clock.
func (h *History) Now() int64 { return time.Since(h.start).Nanoseconds() }

// NewProcess returns a fresh client process number.
func (h *History) NewProcess() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextPr++
	return h.nextPr - 1
}

// Result is what a client learnt when an operation completed.
type Result struct {
	Outcome  Outcome
	Code     Code
	Found    bool
	State    string
	Loc, ACL string
	Revision uint64
	Stale    bool // a read served without the linearizable barrier
	// ServerError marks an answer no correct node gives to a well-formed
	// request: gRPC INTERNAL/UNKNOWN, MUPDATE "directory error" or BAD, an
	// authorisation refusal for the run's admin identity.
	ServerError bool
	Err         error
}

// Invoke records the invocation of op (its Kind, Name, ... filled in) and
// returns it; the history owns it from now on. Call Complete with it.
func (h *History) Invoke(op *Op) *Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.ID = len(h.ops)
	op.Complete = -1
	op.Invoke = h.Now()
	h.ops = append(h.ops, op)
	return op
}

// Complete records the op's completion with its result.
func (h *History) Complete(op *Op, r Result) {
	h.mu.Lock()
	op.Complete = h.Now()
	op.Outcome, op.Code, op.Found, op.State = r.Outcome, r.Code, r.Found, r.State
	op.RLoc, op.RACL, op.Revision, op.Stale, op.ServerError = r.Loc, r.ACL, r.Revision, r.Stale, r.ServerError
	if r.Err != nil {
		op.Err = r.Err.Error()
	}
	h.mu.Unlock()
	if r.Outcome == OK && op.Kind.IsWrite() && r.Revision > 0 {
		for {
			cur := h.maxAcked.Load()
			if r.Revision <= cur || h.maxAcked.CompareAndSwap(cur, r.Revision) {
				break
			}
		}
	}
}

// MaxAcked is the highest revision of a gRPC write acknowledged so far.
func (h *History) MaxAcked() uint64 { return h.maxAcked.Load() }

// StartFault records the start of a fault.
func (h *History) StartFault(nemesis, desc string) *Fault {
	f := &Fault{Nemesis: nemesis, Desc: desc, Start: h.Now(), End: -1}
	h.mu.Lock()
	h.faults = append(h.faults, f)
	h.mu.Unlock()
	return f
}

// EndFault records the end of a fault (err: why it could not be applied).
func (h *History) EndFault(f *Fault, err error) {
	now := h.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	f.End = now
	if err != nil {
		f.Err = err.Error()
	}
}

// Ops returns a copy of the operations; ops still in flight are returned
// as unknown with an open end.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Op, len(h.ops))
	for i, op := range h.ops {
		out[i] = *op
		if out[i].Complete < 0 {
			out[i].Outcome = Unknown
			out[i].Complete = math.MaxInt64
		}
	}
	return out
}

// Faults returns a copy of the faults, sorted by start.
func (h *History) Faults() []Fault {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Fault, len(h.faults))
	for i, f := range h.faults {
		out[i] = *f
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}

// WriteJSONL writes one JSON object per line: every op, then every fault
// (with "type" telling them apart).
func WriteJSONL(w io.Writer, ops []Op, faults []Fault) error {
	enc := json.NewEncoder(w)
	for i := range ops {
		if err := enc.Encode(struct {
			Type string `json:"type"`
			*Op
		}{"op", &ops[i]}); err != nil {
			return fmt.Errorf("jepsen: write history: %w", err)
		}
	}
	for i := range faults {
		if err := enc.Encode(struct {
			Type string `json:"type"`
			*Fault
		}{"fault", &faults[i]}); err != nil {
			return fmt.Errorf("jepsen: write history: %w", err)
		}
	}
	return nil
}
