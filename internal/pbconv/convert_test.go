package pbconv

import (
	"testing"

	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

func TestEventsSurviveTheWireUnchanged(t *testing.T) {
	entry := func(s fsm.State) fsm.Entry {
		return fsm.Entry{Name: "example.com!user.alice", State: s, Location: "be1!default", ACL: "alice\tlrs\t",
			CreateRevision: 3, ModRevision: 9, ReservedBy: "be1", ReservedAt: 1700000000123456789}
	}
	tests := []struct {
		name string
		ev   fsm.Event
	}{
		{"reserve", fsm.Event{Revision: 1, Type: fsm.EventPut, Op: fsm.OpReserve, Entry: entry(fsm.StateReserved)}},
		{"activate", fsm.Event{Revision: 2, Type: fsm.EventPut, Op: fsm.OpActivate, Entry: entry(fsm.StateActive)}},
		{"deactivate with a previous location", fsm.Event{Revision: 3, Type: fsm.EventPut, Op: fsm.OpDeactivate, Entry: entry(fsm.StateReserved), PrevLocation: "be2!default"}},
		{"delete", fsm.Event{Revision: 4, Type: fsm.EventDelete, Op: fsm.OpDelete, Entry: entry(fsm.StateActive)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := EventFromProto(EventToProto(tc.ev)); got != tc.ev {
				t.Fatalf("round trip changed the event:\n got %+v\nwant %+v", got, tc.ev)
			}
		})
	}
}

func TestUnknownWireValuesMapToZero(t *testing.T) {
	if got := MailboxFromProto(nil); got != (fsm.Entry{}) {
		t.Fatalf("nil mailbox: %+v", got)
	}
	if got := OpFromProto(rookeryv1.Operation_OPERATION_UNSPECIFIED); got != 0 {
		t.Fatalf("unspecified op: %v", got)
	}
	if got := MailboxFromProto(&rookeryv1.Mailbox{State: rookeryv1.MailboxState(99)}).State; got != 0 {
		t.Fatalf("unknown state: %v", got)
	}
	if got := OpToProto(fsm.OpSetPeer); got != rookeryv1.Operation_OPERATION_UNSPECIFIED {
		t.Fatalf("OpSetPeer has no API form, got %v", got)
	}
}
