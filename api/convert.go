package api

import (
	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// MailboxToProto converts a directory entry to its wire form.
func MailboxToProto(e fsm.Entry) *rookeryv1.Mailbox {
	return &rookeryv1.Mailbox{
		Name:               e.Name,
		State:              stateToProto(e.State),
		Location:           e.Location,
		Acl:                e.ACL,
		CreateRevision:     e.CreateRevision,
		ModRevision:        e.ModRevision,
		ReservedBy:         e.ReservedBy,
		ReservedAtUnixNano: e.ReservedAt,
	}
}

// MailboxFromProto is the inverse of MailboxToProto.
func MailboxFromProto(m *rookeryv1.Mailbox) fsm.Entry {
	if m == nil {
		return fsm.Entry{}
	}
	return fsm.Entry{
		Name:           m.GetName(),
		State:          stateFromProto(m.GetState()),
		Location:       m.GetLocation(),
		ACL:            m.GetAcl(),
		CreateRevision: m.GetCreateRevision(),
		ModRevision:    m.GetModRevision(),
		ReservedBy:     m.GetReservedBy(),
		ReservedAt:     m.GetReservedAtUnixNano(),
	}
}

// EventToProto converts a change event to its wire form.
func EventToProto(ev fsm.Event) *rookeryv1.Event {
	t := rookeryv1.EventType_EVENT_TYPE_PUT
	if ev.Type == fsm.EventDelete {
		t = rookeryv1.EventType_EVENT_TYPE_DELETE
	}
	return &rookeryv1.Event{
		Revision:     ev.Revision,
		Type:         t,
		Mailbox:      MailboxToProto(ev.Entry),
		PrevLocation: ev.PrevLocation,
		Op:           OpToProto(ev.Op),
	}
}

// EventFromProto is the inverse of EventToProto.
func EventFromProto(p *rookeryv1.Event) fsm.Event {
	t := fsm.EventPut
	if p.GetType() == rookeryv1.EventType_EVENT_TYPE_DELETE {
		t = fsm.EventDelete
	}
	return fsm.Event{
		Revision:     p.GetRevision(),
		Type:         t,
		Op:           opFromProto(p.GetOp()),
		Entry:        MailboxFromProto(p.GetMailbox()),
		PrevLocation: p.GetPrevLocation(),
	}
}

func stateToProto(s fsm.State) rookeryv1.MailboxState {
	switch s {
	case fsm.StateActive:
		return rookeryv1.MailboxState_MAILBOX_STATE_ACTIVE
	case fsm.StateReserved:
		return rookeryv1.MailboxState_MAILBOX_STATE_RESERVED
	}
	return rookeryv1.MailboxState_MAILBOX_STATE_UNSPECIFIED
}

func stateFromProto(s rookeryv1.MailboxState) fsm.State {
	switch s {
	case rookeryv1.MailboxState_MAILBOX_STATE_ACTIVE:
		return fsm.StateActive
	case rookeryv1.MailboxState_MAILBOX_STATE_RESERVED:
		return fsm.StateReserved
	}
	return 0
}

// OpToProto maps a directory op to its API enum (UNSPECIFIED for OpSetPeer).
func OpToProto(o fsm.Op) rookeryv1.Operation {
	switch o {
	case fsm.OpReserve:
		return rookeryv1.Operation_OPERATION_RESERVE
	case fsm.OpActivate:
		return rookeryv1.Operation_OPERATION_ACTIVATE
	case fsm.OpDeactivate:
		return rookeryv1.Operation_OPERATION_DEACTIVATE
	case fsm.OpDelete:
		return rookeryv1.Operation_OPERATION_DELETE
	}
	return rookeryv1.Operation_OPERATION_UNSPECIFIED
}

func opFromProto(o rookeryv1.Operation) fsm.Op {
	switch o {
	case rookeryv1.Operation_OPERATION_RESERVE:
		return fsm.OpReserve
	case rookeryv1.Operation_OPERATION_ACTIVATE:
		return fsm.OpActivate
	case rookeryv1.Operation_OPERATION_DEACTIVATE:
		return fsm.OpDeactivate
	case rookeryv1.Operation_OPERATION_DELETE:
		return fsm.OpDelete
	}
	return 0
}
