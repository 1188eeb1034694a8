package cluster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// fsmAdapter connects raft's apply loop to the directory store.
//
// It tracks its own applied index instead of relying on raft's
// AppliedIndex, which counts entries handed to the FSM goroutine rather
// than entries applied, and instead of the store's, which only moves on
// command entries. Every entry the adapter sees (commands and, through
// ApplyBatch, configuration changes) advances it, so a reader that waits
// for index N knows the store reflects every entry up to N.
type fsmAdapter struct {
	store  *fsm.Store
	logger *slog.Logger

	mu      sync.Mutex
	applied uint64
	changed chan struct{} // closed and replaced when applied moves
}

var _ raft.BatchingFSM = (*fsmAdapter)(nil)

func newFSMAdapter(store *fsm.Store, logger *slog.Logger) *fsmAdapter {
	return &fsmAdapter{store: store, logger: logger, changed: make(chan struct{})}
}

// applyError is the response for an entry that could not be applied; it is
// logged and returned to the proposer, and the node keeps running.
type applyError struct {
	index uint64
	err   error
}

func (e *applyError) Error() string {
	return fmt.Sprintf("cluster: log entry %d not applied: %v", e.index, e.err)
}

func (e *applyError) Unwrap() error { return e.err }

// Apply applies one entry; raft uses ApplyBatch, this keeps raft.FSM whole.
func (a *fsmAdapter) Apply(l *raft.Log) any {
	return a.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies consecutive committed entries. The response for a
// command entry is its []fsm.Result, or *applyError when it cannot be
// decoded.
func (a *fsmAdapter) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	var last uint64
	for i, l := range logs {
		last = l.Index
		if l.Type != raft.LogCommand {
			continue // configuration change: nothing for the store
		}
		out[i] = a.applyCommand(l)
	}
	if len(logs) > 0 {
		a.setApplied(last)
	}
	return out
}

func (a *fsmAdapter) applyCommand(l *raft.Log) any {
	cmds, err := fsm.DecodeCommands(l.Data)
	if err != nil {
		a.logger.Error("cannot decode raft log entry; skipped", "index", l.Index, "term", l.Term, "bytes", len(l.Data), "error", err)
		return &applyError{index: l.Index, err: err}
	}
	return a.store.Apply(l.Index, cmds)
}

func (a *fsmAdapter) setApplied(index uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if index <= a.applied {
		return
	}
	a.applied = index
	close(a.changed)
	a.changed = make(chan struct{})
}

// appliedIndex returns the last applied index and a channel closed when it
// next moves.
func (a *fsmAdapter) appliedIndex() (uint64, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applied, a.changed
}

// Snapshot framing: raft snapshots carry the adapter's applied index ahead
// of the store's own versioned format, so a node restored from a snapshot
// knows exactly which index it reflects even when the last entries before it
// were configuration changes the store never saw.
var snapshotMagic = [8]byte{'R', 'K', 'Y', 'S', 'N', 'A', 'P', '1'}

const snapshotHeaderLen = len(snapshotMagic) + 8

// Snapshot captures the store in O(1); the encoding happens in Persist while
// writes continue.
func (a *fsmAdapter) Snapshot() (raft.FSMSnapshot, error) {
	applied, _ := a.appliedIndex()
	return &fsmSnapshot{snap: a.store.Snapshot(), applied: applied}, nil
}

// Restore replaces the store's state with a snapshot's.
func (a *fsmAdapter) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 1<<20)
	var hdr [snapshotHeaderLen]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return fmt.Errorf("cluster: read snapshot header: %w", err)
	}
	if [8]byte(hdr[:8]) != snapshotMagic {
		return errors.New("cluster: snapshot has an unknown format (bad magic)")
	}
	applied := binary.BigEndian.Uint64(hdr[8:])
	if err := a.store.Restore(br); err != nil {
		return fmt.Errorf("cluster: restore snapshot at index %d: %w", applied, err)
	}
	a.mu.Lock()
	a.applied = applied
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
	a.logger.Info("restored snapshot", "index", applied, "revision", a.store.Revision())
	return nil
}

type fsmSnapshot struct {
	snap    *fsm.Snapshot
	applied uint64
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	var hdr [snapshotHeaderLen]byte
	copy(hdr[:], snapshotMagic[:])
	binary.BigEndian.PutUint64(hdr[8:], s.applied)
	if _, err := bw.Write(hdr[:]); err != nil {
		return fmt.Errorf("cluster: write snapshot: %w", err)
	}
	if _, err := s.snap.WriteTo(bw); err != nil {
		return fmt.Errorf("cluster: write snapshot: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("cluster: write snapshot: %w", err)
	}
	return nil
}

func (s *fsmSnapshot) Release() {}
