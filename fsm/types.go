package fsm

import (
	"fmt"
	"strings"
)

// State is the state of a directory entry, as MUPDATE knows it.
type State uint8

const (
	// StateReserved: the name is taken while a backend creates or moves it.
	StateReserved State = 1
	// StateActive: the mailbox lives at its location.
	StateActive State = 2
)

func (s State) String() string {
	switch s {
	case StateReserved:
		return "RESERVED"
	case StateActive:
		return "ACTIVE"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Entry is one directory entry, keyed by the Cyrus internal mailbox name
// (compared as bytes, ordered by DBNameKey).
type Entry struct {
	Name     string
	State    State
	Location string // "server!partition", stored as given ("be2!" and "a!b!c" included)
	ACL      string // Cyrus ACL string, opaque to the directory
	// CreateRevision is the revision that created the entry; ModRevision the
	// revision of its last change.
	CreateRevision uint64
	ModRevision    uint64
	// ReservedBy and ReservedAt record who reserved the entry and when (the
	// leader's clock at proposal, Unix nanoseconds). Empty/zero when ACTIVE.
	ReservedBy string
	ReservedAt int64
}

// Server returns the server part of the location: the text before the first
// '!', or the whole location when it has none.
func (e Entry) Server() string { return ServerOf(e.Location) }

// ServerOf returns the server part of a "server!partition" location.
func ServerOf(location string) string {
	if i := strings.IndexByte(location, '!'); i >= 0 {
		return location[:i]
	}
	return location
}

// Op is a directory command.
type Op uint8

const (
	OpReserve    Op = 1
	OpActivate   Op = 2
	OpDeactivate Op = 3
	OpDelete     Op = 4
	// OpSetPeer records a cluster member's gRPC address so every node can
	// forward to the leader: Name is the node ID, Location the address
	// (empty removes it). It changes no mailbox and produces no event.
	OpSetPeer Op = 5
)

func (o Op) String() string {
	switch o {
	case OpReserve:
		return "RESERVE"
	case OpActivate:
		return "ACTIVATE"
	case OpDeactivate:
		return "DEACTIVATE"
	case OpDelete:
		return "DELETE"
	case OpSetPeer:
		return "SETPEER"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Command is one directory write. Everything the apply needs is inside it:
// Time is the proposer's clock, never the applying node's.
type Command struct {
	Op       Op
	Name     string
	Location string // RESERVE, ACTIVATE, DEACTIVATE
	ACL      string // ACTIVATE
	Identity string // authenticated identity that issued the command
	// Bound is the server the issuing identity is bound to
	// (mupdate.backend_servers), "" for an unbound writer. The proposing
	// node stamps it; apply decides on it against the committed entry.
	Bound string
	Time  int64 // Unix nanoseconds, set by the proposer
	// IfRevision, when non-zero, makes the command conditional on the
	// entry's current ModRevision (compare-and-set).
	IfRevision uint64
}

// Code is the outcome of one command.
type Code uint8

const (
	CodeOK        Code = 0
	CodeExists    Code = 1 // RESERVE of a name held at another location
	CodeNotFound  Code = 2 // DEACTIVATE or DELETE of a missing name
	CodeNotActive Code = 3 // DEACTIVATE of an entry that is not ACTIVE
	CodeInvalid   Code = 4 // malformed command (see Validate)
	// CodePermissionDenied: the issuer is bound to a server (Command.Bound)
	// and the entry is, or would end up, on another one.
	CodePermissionDenied Code = 5
	// CodeConflict: the command carried IfRevision and the entry's
	// ModRevision differs (or the entry is gone). Nothing changed.
	CodeConflict Code = 6
)

// String names the outcome for logs and errors. The words each front end
// answers with are its own (mupdatecompat: Cyrus's; api: gRPC codes).
func (c Code) String() string {
	switch c {
	case CodeOK:
		return "ok"
	case CodeExists:
		return "exists"
	case CodeNotFound:
		return "not found"
	case CodeNotActive:
		return "not active"
	case CodeInvalid:
		return "invalid"
	case CodePermissionDenied:
		return "permission denied"
	case CodeConflict:
		return "conflict"
	}
	return fmt.Sprintf("code %d", uint8(c))
}

// Result is the outcome of one command; Revision is the revision of the
// change when Code is CodeOK (0 for OpSetPeer).
type Result struct {
	Code     Code
	Revision uint64
}

// EventType says whether an event created/changed or removed an entry.
type EventType uint8

const (
	EventPut    EventType = 1
	EventDelete EventType = 2
)

// Event is one change on the feed. Revisions are dense: every successful
// mailbox command produces exactly one event with the next revision.
type Event struct {
	Revision uint64
	Type     EventType
	Op       Op
	// Entry is the new state for EventPut, the removed state for EventDelete.
	Entry Entry
	// PrevLocation is the location before the change ("" if the entry did
	// not exist); PARTIAL-UPDATE filters match on old or new server.
	PrevLocation string
}
