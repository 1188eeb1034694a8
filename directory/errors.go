package directory

import (
	"context"
	"errors"
	"fmt"

	"github.com/rookery/rookery/fsm"
)

// Kind classifies a directory error; front ends map it to their protocol
// (a Cyrus NO text, a gRPC code) and to nothing else.
type Kind uint8

// KindInternal is anything unrecognised, so that bugs are not disguised as
// transient faults. KindUnavailable means "not now" (no leader, no quorum,
// shut down, deadline) and invites a retry. KindCompacted ends a follow
// that started before the kept history; its cause is the
// *fsm.CompactedError. The others are the state machine's refusals;
// KindPermissionDenied is also a reader's write, with cause ErrReadOnly.
const (
	KindInternal Kind = iota
	KindUnavailable
	KindPermissionDenied
	KindInvalid
	KindNotFound
	KindExists
	KindNotActive
	KindConflict
	KindCompacted
)

var (
	// ErrUnavailable is wrapped by replica errors meaning "not now".
	ErrUnavailable = errors.New("directory: temporarily unavailable")
	// ErrReadOnly is the cause of a write refused because the caller is
	// not a writer, as opposed to a refusal by the server binding.
	ErrReadOnly = errors.New("identity may not write (not a writer)")
)

// Error is what the service returns for a refused or failed request: test
// Kind (errors.As, or KindOf); Err, the cause, is reachable by errors.Is.
type Error struct {
	Kind Kind
	Op   fsm.Op // the command, for writes
	Name string // the name concerned, if any
	Err  error
}

// description is the directory's own wording of a refusal, which the gRPC
// API sends; the MUPDATE front end has Cyrus's.
var description = map[Kind]string{
	KindPermissionDenied: "permission denied: the entry is, or would be, on a server this identity is not bound to",
	KindNotFound:         "mailbox doesn't exist",
	KindExists:           "mailbox already exists at another location",
	KindNotActive:        "mailbox not currently active",
	KindConflict:         "mailbox changed since the given revision",
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

// KindOf returns the kind of a service error, KindInternal for others.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

var codeKind = map[fsm.Code]Kind{
	fsm.CodeExists: KindExists, fsm.CodeNotFound: KindNotFound, fsm.CodeNotActive: KindNotActive,
	fsm.CodeInvalid: KindInvalid, fsm.CodePermissionDenied: KindPermissionDenied, fsm.CodeConflict: KindConflict,
}

// resultError is the error for one command's outcome, nil for CodeOK.
func resultError(c fsm.Command, code fsm.Code) error {
	k, ok := codeKind[code]
	switch {
	case code == fsm.CodeOK:
		return nil
	case !ok:
		return &Error{Op: c.Op, Name: c.Name, Err: fmt.Errorf("unexpected result code %d", code)}
	}
	return &Error{Kind: k, Op: c.Op, Name: c.Name}
}

// replicaError classifies an error of the replica.
func replicaError(op fsm.Op, name string, err error) error {
	if err == nil {
		return nil
	}
	k := KindInternal
	var t interface{ Temporary() bool }
	if errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &t) && t.Temporary()) {
		k = KindUnavailable
	}
	return &Error{Kind: k, Op: op, Name: name, Err: err}
}
