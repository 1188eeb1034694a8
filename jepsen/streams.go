package jepsen

import (
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Event is one committed change as a gRPC Watch stream delivered it.
type Event struct {
	Revision       uint64 `json:"revision"`
	Delete         bool   `json:"delete,omitempty"`
	Op             Kind   `json:"op"`
	Name           string `json:"name"`
	State          string `json:"state,omitempty"`
	Loc            string `json:"loc,omitempty"`
	ACL            string `json:"acl,omitempty"`
	CreateRevision uint64 `json:"create_revision,omitempty"`
	ModRevision    uint64 `json:"mod_revision,omitempty"`
	ReservedBy     string `json:"reserved_by,omitempty"`
	PrevLoc        string `json:"prev_loc,omitempty"`
}

// eventFromProto converts a Watch event.
func eventFromProto(e *rookeryv1.Event) Event {
	m := e.GetMailbox()
	out := Event{
		Revision:       e.GetRevision(),
		Delete:         e.GetType() == rookeryv1.EventType_EVENT_TYPE_DELETE,
		Op:             kindFromProto(e.GetOp()),
		Name:           m.GetName(),
		State:          stateFromProto(m.GetState()),
		Loc:            m.GetLocation(),
		ACL:            m.GetAcl(),
		CreateRevision: m.GetCreateRevision(),
		ModRevision:    m.GetModRevision(),
		ReservedBy:     m.GetReservedBy(),
		PrevLoc:        e.GetPrevLocation(),
	}
	return out
}

func kindFromProto(o rookeryv1.Operation) Kind {
	switch o {
	case rookeryv1.Operation_OPERATION_RESERVE:
		return KindReserve
	case rookeryv1.Operation_OPERATION_ACTIVATE:
		return KindActivate
	case rookeryv1.Operation_OPERATION_DEACTIVATE:
		return KindDeactivate
	case rookeryv1.Operation_OPERATION_DELETE:
		return KindDelete
	}
	return Kind("unspecified")
}

func stateFromProto(s rookeryv1.MailboxState) string {
	switch s {
	case rookeryv1.MailboxState_MAILBOX_STATE_RESERVED:
		return StateReserved
	case rookeryv1.MailboxState_MAILBOX_STATE_ACTIVE:
		return StateActive
	}
	return ""
}

// after is the name's state once the event is applied.
func (e Event) after() mailbox {
	if e.Delete {
		return mailbox{}
	}
	return mailbox{State: e.State, Loc: e.Loc, ACL: e.ACL}
}

// WatchSession is one gRPC Watch stream: what was asked, what came, how it
// ended.
type WatchSession struct {
	Watcher string  `json:"watcher"`
	Node    string  `json:"node"`
	From    uint64  `json:"from"`  // from_revision asked for
	Start   uint64  `json:"start"` // revision of the first message; 0 if none came
	Events  []Event `json:"events"`
	// Reset: the watcher could not resume (every node answered
	// "compacted") and restarted from a listing at Start; the revisions
	// between From and Start were never delivered to it.
	Reset bool   `json:"reset,omitempty"`
	End   string `json:"end"` // why the stream ended
}

// UpdateItem is one thing a MUPDATE UPDATE stream delivered after its
// dump: a streamed change, or the OK of a NOOP barrier.
type UpdateItem struct {
	Kind string `json:"kind"` // mailbox, reserve, delete, noop
	Name string `json:"name,omitempty"`
	Loc  string `json:"loc,omitempty"`
	ACL  string `json:"acl,omitempty"`
	// For a NOOP: when it was sent and answered, and the highest
	// revision acknowledged to a gRPC writer before it was sent, which
	// the stream must have reached by the OK.
	SentAt   int64  `json:"sent_ns,omitempty"`
	OKAt     int64  `json:"ok_ns,omitempty"`
	Acked    uint64 `json:"acked_before,omitempty"`
	FinalRev uint64 `json:"final_revision,omitempty"` // set on the NOOP sent after healing
}

// UpdateSession is one MUPDATE connection in UPDATE mode.
type UpdateSession struct {
	Streamer string       `json:"streamer"`
	Node     string       `json:"node"`
	Dump     []Mailbox    `json:"dump"`
	Items    []UpdateItem `json:"items"`
	End      string       `json:"end"`
}

// Mailbox is a named entry, as the final states and dumps record it.
type Mailbox struct {
	Name  string `json:"name"`
	State string `json:"state"`
	Loc   string `json:"loc"`
	ACL   string `json:"acl,omitempty"`
}

// NodeState is a node's whole directory after healing.
type NodeState struct {
	Node     string    `json:"node"`
	Revision uint64    `json:"revision"`
	Entries  []Mailbox `json:"entries"`
	Err      string    `json:"error,omitempty"`
}
