package cluster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
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
//
// Raft requires applying to be deterministic on every node, so an entry the
// adapter cannot decode or apply is fatal: the adapter records the error,
// applies nothing from then on (entry N+1 must never be applied without
// entry N) and closes halted, and the Node shuts raft down and reports the
// failure (Node.Failed). The same holds for a snapshot that cannot be
// restored once raft runs; raft would panic on a restore error then, so the
// adapter halts instead of returning it.
type fsmAdapter struct {
	store  *fsm.Store
	logger *slog.Logger

	mu      sync.Mutex
	applied uint64
	changed chan struct{} // closed and replaced when applied moves
	// fatal is the first error that halted the adapter; halted is closed
	// when it is set.
	fatal  error
	halted chan struct{}
	// running is set once raft.NewRaft has returned: a restore before
	// that is raft's start-up restore (see Restore).
	running bool

	// commands counts the directory commands applied since the last
	// snapshot or restore (Config.SnapshotCommands).
	commands *commandCount
}

var _ raft.BatchingFSM = (*fsmAdapter)(nil)

func newFSMAdapter(store *fsm.Store, logger *slog.Logger) *fsmAdapter {
	return &fsmAdapter{store: store, logger: logger, changed: make(chan struct{}), halted: make(chan struct{}), commands: newCommandCount(0)}
}

// ErrHalted is wrapped by the error of a node whose state machine stopped
// because a log entry or snapshot could not be decoded or applied
// (Node.Failure), and by the responses to entries it did not apply.
var ErrHalted = errors.New("cluster: state machine halted")

// applyError is the response for an entry this node did not apply. The
// entry is committed and other nodes may well have applied it (the damage
// can be local), so for the proposer the write's outcome is unknown: it
// wraps ErrUnavailable as well as the cause.
type applyError struct {
	index, term uint64
	err         error
}

func (e *applyError) Error() string {
	return fmt.Sprintf("cluster: log entry %d (term %d) not applied on this node, outcome unknown: %v", e.index, e.term, e.err)
}

func (e *applyError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// Apply applies one entry; raft uses ApplyBatch, this keeps raft.FSM whole.
func (a *fsmAdapter) Apply(l *raft.Log) any {
	return a.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies consecutive committed entries. The response for a
// command entry is its []fsm.Result. An entry that cannot be decoded or
// applied halts the adapter: it and every later entry get an *applyError
// wrapping ErrHalted, and the applied index stays before it.
func (a *fsmAdapter) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	var last uint64
	applied := 0
	for i, l := range logs {
		if err := a.haltedErr(); err != nil {
			out[i] = &applyError{index: l.Index, term: l.Term, err: err}
			continue
		}
		if l.Type == raft.LogCommand {
			res, err := a.applyCommand(l)
			if err != nil {
				a.halt(fmt.Errorf("%w: raft log entry %d (term %d) cannot be applied: %w", ErrHalted, l.Index, l.Term, err))
				out[i] = &applyError{index: l.Index, term: l.Term, err: err}
				continue
			}
			out[i] = res
			applied += len(res)
		}
		// Other entries (configuration changes) hold nothing for the
		// store but still advance the applied index.
		last = l.Index
	}
	if last > 0 {
		a.setApplied(last)
	}
	a.commands.add(applied)
	return out
}

// applyCommand decodes and applies one command entry. A panic in the store
// is an entry that cannot be applied, not a reason to crash the process.
func (a *fsmAdapter) applyCommand(l *raft.Log) (res []fsm.Result, err error) {
	cmds, err := fsm.DecodeCommands(l.Data)
	if err != nil {
		return nil, fmt.Errorf("decode %d bytes: %w", len(l.Data), err)
	}
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("apply panicked: %v", r)
		}
	}()
	return a.store.Apply(l.Index, cmds), nil
}

// halt records the first fatal error and stops the adapter.
func (a *fsmAdapter) halt(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fatal != nil {
		return
	}
	a.fatal = err
	close(a.halted)
	a.logger.Error("state machine halted: this node applies nothing more", "error", err)
}

// haltedErr is the error that halted the adapter, or nil.
func (a *fsmAdapter) haltedErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fatal
}

// setRunning marks the end of raft's start-up restore.
func (a *fsmAdapter) setRunning() {
	a.mu.Lock()
	a.running = true
	a.mu.Unlock()
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
//
// Version 2 ends the header with a CRC-32C of the magic and the index; the
// store's format carries its own CRC-32C trailer, so every byte of a
// snapshot is checksummed (docs/integrity.md). Version 1 headers, without
// the checksum, are still read.
var (
	snapshotMagicV1 = [8]byte{'R', 'K', 'Y', 'S', 'N', 'A', 'P', '1'}
	snapshotMagic   = [8]byte{'R', 'K', 'Y', 'S', 'N', 'A', 'P', '2'}
)

const (
	snapshotHeaderLenV1 = len(snapshotMagic) + 8
	snapshotHeaderLen   = snapshotHeaderLenV1 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// readSnapshotHeader reads and checks the adapter header of a snapshot and
// returns the applied index it records.
func readSnapshotHeader(r io.Reader) (uint64, error) {
	var hdr [snapshotHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:snapshotHeaderLenV1]); err != nil {
		return 0, fmt.Errorf("cluster: read snapshot header: %w", err)
	}
	applied := binary.BigEndian.Uint64(hdr[8:snapshotHeaderLenV1])
	switch [8]byte(hdr[:8]) {
	case snapshotMagicV1:
		return applied, nil
	case snapshotMagic:
		if _, err := io.ReadFull(r, hdr[snapshotHeaderLenV1:]); err != nil {
			return 0, fmt.Errorf("cluster: read snapshot header: %w", err)
		}
		want := binary.BigEndian.Uint32(hdr[snapshotHeaderLenV1:])
		if got := crc32.Checksum(hdr[:snapshotHeaderLenV1], castagnoli); got != want {
			return 0, fmt.Errorf("cluster: snapshot header checksum %08x, want %08x: %w", got, want, fsm.ErrCorrupt)
		}
		return applied, nil
	}
	return 0, fmt.Errorf("cluster: snapshot has an unknown format (bad magic %q): %w", hdr[:8], fsm.ErrCorrupt)
}

// Snapshot captures the store in O(1); the encoding happens in Persist while
// writes continue. A halted adapter refuses: raft would label the snapshot
// with entries the store never applied.
func (a *fsmAdapter) Snapshot() (raft.FSMSnapshot, error) {
	if err := a.haltedErr(); err != nil {
		return nil, err
	}
	applied, _ := a.appliedIndex()
	taken := a.commands.total()
	return &fsmSnapshot{snap: a.store.Snapshot(), applied: applied, persisted: func() { a.commands.snapshotted(taken) }}, nil
}

// Restore replaces the store's state with a snapshot's. The store checks
// the whole stream before replacing anything, so a damaged snapshot leaves
// the state as it was, and the adapter halts. During raft's start-up
// restore the error is returned (NewRaft then fails, and Node.Open with
// it); once raft runs it is not, because raft panics on a restore error and
// the halted node stops cleanly instead (see fsmAdapter).
func (a *fsmAdapter) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	err := a.restore(rc)
	if err == nil {
		return nil
	}
	a.halt(fmt.Errorf("%w: %w", ErrHalted, err))
	a.mu.Lock()
	running := a.running
	a.mu.Unlock()
	if running {
		return nil
	}
	return err
}

func (a *fsmAdapter) restore(rc io.Reader) error {
	if err := a.haltedErr(); err != nil {
		return err
	}
	br := bufio.NewReaderSize(rc, 1<<20)
	applied, err := readSnapshotHeader(br)
	if err != nil {
		return err
	}
	if err := a.store.Restore(br); err != nil {
		return fmt.Errorf("cluster: restore snapshot at index %d: %w", applied, err)
	}
	a.mu.Lock()
	a.applied = applied
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
	a.commands.restored()
	a.logger.Info("restored snapshot", "index", applied, "revision", a.store.Revision())
	return nil
}

type fsmSnapshot struct {
	snap    *fsm.Snapshot
	applied uint64
	// persisted, if set, runs once the snapshot is safely stored.
	persisted func()
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	if err := sink.Close(); err != nil {
		return err
	}
	if s.persisted != nil {
		s.persisted()
	}
	return nil
}

func (s *fsmSnapshot) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	var hdr [snapshotHeaderLen]byte
	copy(hdr[:], snapshotMagic[:])
	binary.BigEndian.PutUint64(hdr[8:], s.applied)
	binary.BigEndian.PutUint32(hdr[snapshotHeaderLenV1:], crc32.Checksum(hdr[:snapshotHeaderLenV1], castagnoli))
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
