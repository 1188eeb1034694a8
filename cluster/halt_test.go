package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// A committed entry that does not decode stops every node that reaches
// it: raft's FSM contract is that applying is deterministic everywhere, so
// a node that cannot apply entry N must not apply N+1. Before, each node
// logged "skipped" and went on, and would diverge if only some nodes saw
// the damage.
func TestUndecodableEntryStopsEveryNodeNamingIndexAndTerm(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	l := c.leader()
	mustApply(t, l.node, activate(1))
	bad := l.node.raft.Apply([]byte{0xff, 0xfe, 0x00, 0x42}, l.node.cfg.WriteTimeout)
	if err := bad.Error(); err != nil {
		t.Fatalf("raft apply: %v", err)
	}
	badIndex, term := bad.Index(), l.node.raft.CurrentTerm()
	// The next entry is committed too, but must not be applied anywhere.
	next := l.node.raft.Apply(fsm.EncodeCommands([]fsm.Command{activate(2)}), l.node.cfg.WriteTimeout)
	_ = next.Error()

	for _, tn := range c.nodes {
		select {
		case <-tn.node.Failed():
		case <-time.After(15 * time.Second):
			t.Fatalf("%s did not stop after entry %d", tn.cfg.NodeID, badIndex)
		}
		err := tn.node.Failure()
		want := fmt.Sprintf("raft log entry %d (term %d) cannot be applied", badIndex, term)
		if !errors.Is(err, ErrHalted) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tn.cfg.DataDir) {
			t.Fatalf("%s: failure %v; want ErrHalted naming %q and the data dir", tn.cfg.NodeID, err, want)
		}
		if applied, _ := tn.node.fsm.appliedIndex(); applied >= badIndex {
			t.Fatalf("%s: applied index %d moved past the bad entry %d", tn.cfg.NodeID, applied, badIndex)
		}
		if _, ok := tn.node.Store().Get(mailboxName(2)); ok {
			t.Fatalf("%s applied the entry after the bad one", tn.cfg.NodeID)
		}
		if _, ok := tn.node.Store().Get(mailboxName(1)); !ok {
			t.Fatalf("%s lost the entry before the bad one", tn.cfg.NodeID)
		}
		if st := tn.node.Status().State; st != raft.Shutdown.String() {
			t.Fatalf("%s: raft state %s after halting, want Shutdown", tn.cfg.NodeID, st)
		}
		if err := tn.node.CheckReads(); !errors.Is(err, ErrReadsRefused) || !strings.HasPrefix(tn.node.Condition(), "Failed: ") {
			t.Fatalf("%s: CheckReads %v, condition %q; want reads refused and a Failed condition", tn.cfg.NodeID, err, tn.node.Condition())
		}
	}
}

func testAdapter(t *testing.T) (*fsmAdapter, *bytes.Buffer) {
	var logs bytes.Buffer
	return newFSMAdapter(fsm.New(fsm.Config{}), slog.New(slog.NewTextHandler(&logs, nil))), &logs
}

func cmdLog(index uint64, data []byte) *raft.Log {
	return &raft.Log{Index: index, Term: 3, Type: raft.LogCommand, Data: data}
}

// v1 encodes commands as fsm's version 1 did (no checksum), to show that
// existing logs still apply.
func v1(c fsm.Command) []byte {
	b := []byte{1, 1, byte(c.Op)}
	for _, s := range []string{c.Name, c.Location, c.ACL, c.Identity} {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	return append(b, 0) // time 0
}

func TestAdapterHaltsAtTheFirstEntryItCannotDecode(t *testing.T) {
	good := fsm.EncodeCommands([]fsm.Command{activate(1)})
	damaged := append([]byte(nil), good...)
	damaged[len(damaged)-3] ^= 0x10
	tests := []struct {
		name        string
		batch       []*raft.Log
		wantApplied uint64
		wantHalt    bool
	}{
		{"good entries apply", []*raft.Log{cmdLog(1, good), {Index: 2, Type: raft.LogConfiguration}}, 2, false},
		{"version 1 entry without checksum applies", []*raft.Log{cmdLog(1, v1(activate(1)))}, 1, false},
		{"flipped bit halts before the entry", []*raft.Log{cmdLog(1, good), cmdLog(2, damaged), cmdLog(3, fsm.EncodeCommands([]fsm.Command{activate(3)}))}, 1, true},
		{"garbage halts", []*raft.Log{cmdLog(1, []byte{2, 0, 0})}, 0, true},
		{"configuration after a bad entry does not move the index", []*raft.Log{cmdLog(1, nil), {Index: 2, Type: raft.LogConfiguration}}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, logs := testAdapter(t)
			out := a.ApplyBatch(tt.batch)
			applied, _ := a.appliedIndex()
			if applied != tt.wantApplied {
				t.Fatalf("applied index %d, want %d", applied, tt.wantApplied)
			}
			err := a.haltedErr()
			if (err != nil) != tt.wantHalt {
				t.Fatalf("halted %v, want %v", err, tt.wantHalt)
			}
			if !tt.wantHalt {
				return
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("entry %d (term 3)", tt.wantApplied+1)) {
				t.Fatalf("halt error does not name entry %d and its term: %v", tt.wantApplied+1, err)
			}
			if !strings.Contains(logs.String(), "state machine halted") {
				t.Fatalf("no log line: %s", logs.String())
			}
			for i := tt.wantApplied; i < uint64(len(out)); i++ {
				if _, ok := out[i].(*applyError); !ok {
					t.Fatalf("response %d: %#v, want *applyError", i, out[i])
				}
			}
			// Later batches apply nothing either.
			a.ApplyBatch([]*raft.Log{cmdLog(10, fsm.EncodeCommands([]fsm.Command{activate(9)}))})
			if _, ok := a.store.Get(mailboxName(9)); ok {
				t.Fatal("a halted adapter applied a later entry")
			}
			if _, err := a.Snapshot(); err == nil {
				t.Fatal("a halted adapter took a snapshot")
			}
		})
	}
}

// snapshotBytes returns a snapshot of a store holding a few mailboxes.
func snapshotBytes(t *testing.T) []byte {
	a, _ := testAdapter(t)
	a.ApplyBatch([]*raft.Log{cmdLog(1, fsm.EncodeCommands([]fsm.Command{activate(1), activate(2)})), {Index: 2, Type: raft.LogConfiguration}})
	s, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.(*fsmSnapshot).write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Every byte of a snapshot is checksummed, the adapter's header (magic and
// applied index) included: a flip anywhere is detected and nothing of the
// snapshot is applied.
func TestSnapshotDamageAnywhereIsDetectedAndNotApplied(t *testing.T) {
	snap := snapshotBytes(t)
	for i := range snap {
		b := append([]byte(nil), snap...)
		b[i] ^= 0x01
		a, _ := testAdapter(t)
		err := a.Restore(io.NopCloser(bytes.NewReader(b)))
		if err == nil {
			applied, _ := a.appliedIndex()
			t.Fatalf("byte %d of %d flipped: restored (applied index %d)", i, len(snap), applied)
		}
		if a.store.View().Len() != 0 {
			t.Fatalf("byte %d flipped: the damaged snapshot was partly applied", i)
		}
	}
}

func TestSnapshotRoundTripsAndVersion1HeadersAreRead(t *testing.T) {
	snap := snapshotBytes(t)
	v1 := append(append(append([]byte(nil), snapshotMagicV1[:]...), snap[8:snapshotHeaderLenV1]...), snap[snapshotHeaderLen:]...)
	for name, b := range map[string][]byte{"version 2": snap, "version 1": v1} {
		t.Run(name, func(t *testing.T) {
			a, _ := testAdapter(t)
			if err := a.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
				t.Fatal(err)
			}
			if applied, _ := a.appliedIndex(); applied != 2 || a.store.View().Len() != 2 {
				t.Fatalf("applied %d, %d mailboxes; want 2 and 2", applied, a.store.View().Len())
			}
		})
	}
}

// Once raft runs, a restore error makes raft panic ("failed to restore
// snapshot"); the adapter halts instead and the node stops cleanly.
func TestFailedRestoreWhileRunningHaltsInsteadOfFailingRaft(t *testing.T) {
	snap := snapshotBytes(t)
	snap[len(snap)/2] ^= 0x01
	a, _ := testAdapter(t)
	a.setRunning()
	if err := a.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatalf("Restore returned %v to raft, which would panic", err)
	}
	select {
	case <-a.halted:
	default:
		t.Fatal("adapter did not halt on a damaged snapshot")
	}
	if err := a.haltedErr(); !errors.Is(err, fsm.ErrCorrupt) || !errors.Is(err, ErrHalted) {
		t.Fatalf("halt error %v, want ErrHalted wrapping fsm.ErrCorrupt", err)
	}
}
