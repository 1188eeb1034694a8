package directory

import (
	"context"
	"errors"
	"fmt"

	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/fsm"
)

// Kind classifies a directory error; front ends map it to their protocol
// (a Cyrus NO text, a gRPC code) and nothing else.
type Kind uint8

const (
	// KindInternal: anything unrecognised, so that bugs are not disguised
	// as transient faults.
	KindInternal Kind = iota
	// KindUnavailable: temporarily unable to answer (no leader, no quorum,
	// shut down, deadline); the caller may retry, here or elsewhere.
	KindUnavailable
	// KindPermissionDenied: a reader tried to write, or the entry is (or
	// would be) on a server the writer is not bound to.
	KindPermissionDenied
	// KindInvalid: the command breaks the directory's field limits.
	KindInvalid
	// KindNotFound: the name does not exist.
	KindNotFound
	// KindExists: the name is held at another location.
	KindExists
	// KindNotActive: DEACTIVATE of an entry that is not ACTIVE.
	KindNotActive
	// KindConflict: the entry changed since the IfRevision given.
	KindConflict
	// KindCompacted: a follow started before the kept history; the cause
	// is the *fsm.CompactedError.
	KindCompacted
)

// ErrUnavailable is wrapped by replica errors meaning "not now".
var ErrUnavailable = errors.New("directory: temporarily unavailable")

// ErrReadOnly is the cause of a write refused because the caller is not a
// writer, as opposed to a refusal by the server binding.
var ErrReadOnly = errors.New("identity may not write (not a writer)")

// Error is what the service returns for a refused or failed request.
// Use errors.As to get it and Kind to decide; Err, when set, is the cause
// and is reachable through errors.Is/As.
type Error struct {
	Kind Kind
	Op   fsm.Op // the command refused, for writes
	Name string // the name concerned, when there is one
	Err  error
}

// description is the directory's own wording for a result; the MUPDATE
// front end has Cyrus's, the gRPC API sends this one.
var description = map[Kind]string{
	KindPermissionDenied: "permission denied: the entry is, or would be, on a server this identity is not bound to",
	KindNotFound:         "mailbox doesn't exist",
	KindExists:           "mailbox already exists at another location",
	KindNotActive:        "mailbox not currently active",
	KindConflict:         "mailbox changed since the given revision",
	KindInvalid:          "invalid command",
}

func (e *Error) Error() string {
	msg := description[e.Kind]
	if e.Err != nil {
		msg = e.Err.Error()
	}
	if e.Name == "" {
		return msg
	}
	return e.Name + ": " + msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, &Error{Kind: k}) test the kind.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind && t.Op == 0 && t.Name == "" && t.Err == nil
}

// KindOf returns the kind of a service error, KindInternal for others.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// codeKind maps a state-machine outcome to a kind.
var codeKind = map[fsm.Code]Kind{
	fsm.CodeExists:           KindExists,
	fsm.CodeNotFound:         KindNotFound,
	fsm.CodeNotActive:        KindNotActive,
	fsm.CodeInvalid:          KindInvalid,
	fsm.CodePermissionDenied: KindPermissionDenied,
	fsm.CodeConflict:         KindConflict,
}

// resultError is the error for one command's outcome, nil for CodeOK.
func resultError(c fsm.Command, code fsm.Code) error {
	if code == fsm.CodeOK {
		return nil
	}
	k, ok := codeKind[code]
	if !ok {
		return &Error{Kind: KindInternal, Op: c.Op, Name: c.Name, Err: fmt.Errorf("unexpected result %s", code.Text())}
	}
	return &Error{Kind: k, Op: c.Op, Name: c.Name}
}

// replicaError classifies an error from the replica.
func replicaError(op fsm.Op, name string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	k := KindInternal
	if errors.Is(err, ErrUnavailable) || errors.Is(err, cluster.ErrUnavailable) ||
		errors.Is(err, cluster.ErrShutdown) || errors.Is(err, context.DeadlineExceeded) {
		k = KindUnavailable
	}
	return &Error{Kind: k, Op: op, Name: name, Err: err}
}
