package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
)

// diskHealth turns the outcome of every write raft makes to this node's
// disk into alarms: a failed write raises the alarm of its kind (the raft
// log, the stable store, snapshots), the next successful write of the same
// kind clears it. A full disk or a read-only remount therefore shows in
// Status and health while it lasts, and goes away by itself once the disk
// takes writes again; raft retries log writes on its own (the leader
// resends entries a follower failed to store).
//
// Failures from which the store cannot recover without a restart are
// raised as such: raft-wal v0.4.0 seals its tail segment when it cannot
// create the next one (out of disk), and from then on every append fails
// with "segment is sealed" until the WAL is reopened.
type diskHealth struct {
	alarms *alarmSet

	mu      sync.Mutex
	failing map[string]time.Time // kind -> first failure of the current run
}

func newDiskHealth(alarms *alarmSet) *diskHealth {
	return &diskHealth{alarms: alarms, failing: map[string]time.Time{}}
}

// observe records the outcome of one write of kind ("raft log writes", ...).
func (d *diskHealth) observe(kind, what string, err error) {
	d.mu.Lock()
	since, was := d.failing[kind]
	if err == nil {
		if was {
			delete(d.failing, kind)
		}
		d.mu.Unlock()
		if was {
			d.alarms.clear(kind)
		}
		return
	}
	if !was {
		since = time.Now()
		d.failing[kind] = since
	}
	d.mu.Unlock()
	a := Alarm{Kind: kind, Since: since,
		Message: fmt.Sprintf("%s failing since %s: %v", what, since.UTC().Format(time.RFC3339), err)}
	if errors.Is(err, wal.ErrSealed) {
		a.NeedsRestart = true
		a.Message = fmt.Sprintf("%s failing since %s: the raft-wal log store is stuck after a failed segment rotation (%v); restart this node once the disk takes writes again",
			what, since.UTC().Format(time.RFC3339), err)
	}
	d.alarms.raise(a)
}

// wrap puts every write of s under observation; snapDir is where the
// snapshot store keeps its snapshots.
func (d *diskHealth) wrap(s *storage, snapDir string) {
	s.logs = &healthLogStore{LogStore: s.logs, d: d}
	s.stable = &healthStableStore{StableStore: s.stable, d: d}
	s.snaps = &healthSnapshotStore{SnapshotStore: s.snaps, d: d, dir: snapDir}
}

// healthLogStore observes a raft.LogStore's writes.
type healthLogStore struct {
	raft.LogStore
	d *diskHealth
}

const logWrites = "raft log writes"

func (l *healthLogStore) StoreLog(log *raft.Log) error {
	err := l.LogStore.StoreLog(log)
	l.d.observe(AlarmDiskLog, logWrites, err)
	return err
}

func (l *healthLogStore) StoreLogs(logs []*raft.Log) error {
	err := l.LogStore.StoreLogs(logs)
	l.d.observe(AlarmDiskLog, logWrites, err)
	return err
}

func (l *healthLogStore) DeleteRange(lo, hi uint64) error {
	err := l.LogStore.DeleteRange(lo, hi)
	l.d.observe(AlarmDiskLog, logWrites, err)
	return err
}

// IsMonotonic passes raft's optional MonotonicLogStore through: raft-wal
// needs raft to drop the whole log after a snapshot restore.
func (l *healthLogStore) IsMonotonic() bool {
	m, ok := l.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// healthStableStore observes a raft.StableStore's writes. raft panics when
// it cannot persist a new term (Raft.setCurrentTerm); the alarm and its
// log line come first, so the cause is on record.
type healthStableStore struct {
	raft.StableStore
	d *diskHealth
}

const stableWrites = "raft term/vote writes"

func (s *healthStableStore) Set(key, val []byte) error {
	err := s.StableStore.Set(key, val)
	s.d.observe(AlarmDiskStable, stableWrites, err)
	return err
}

func (s *healthStableStore) SetUint64(key []byte, val uint64) error {
	err := s.StableStore.SetUint64(key, val)
	s.d.observe(AlarmDiskStable, stableWrites, err)
	return err
}

// healthSnapshotStore observes snapshot creation and writing, and removes
// what a failed snapshot leaves behind.
type healthSnapshotStore struct {
	raft.SnapshotStore
	d   *diskHealth
	dir string
}

const snapshotWrites = "snapshot writes"

func (s *healthSnapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.SnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		s.d.observe(AlarmDiskSnapshot, snapshotWrites, err)
		return nil, err
	}
	return &healthSnapshotSink{SnapshotSink: sink, d: s.d, tmp: filepath.Join(s.dir, sink.ID()+".tmp")}, nil
}

// healthSnapshotSink observes one snapshot: a failed write or close
// raises the alarm, a snapshot closed whole clears it. A cancelled one
// (the state machine failed to write, not the disk) says nothing.
//
// raft v1.8.0's FileSnapshotSink leaves its temporary directory behind
// when the disk fails under it: Cancel returns as soon as flushing the
// buffered state fails, before removing anything, and Close keeps the
// directory when writing meta.json fails. On a full disk that partial
// snapshot holds the very space the next one needs, so the sink removes
// the directory itself. (The state file's descriptor stays open inside
// raft's sink until the garbage collector closes it.)
type healthSnapshotSink struct {
	raft.SnapshotSink
	d      *diskHealth
	tmp    string // the sink's temporary directory
	failed bool
}

var _ io.Writer = (*healthSnapshotSink)(nil)

func (s *healthSnapshotSink) Write(p []byte) (int, error) {
	n, err := s.SnapshotSink.Write(p)
	if err != nil && !s.failed {
		s.failed = true
		s.d.observe(AlarmDiskSnapshot, snapshotWrites, err)
	}
	return n, err
}

func (s *healthSnapshotSink) Close() error {
	err := s.SnapshotSink.Close()
	if err != nil || !s.failed {
		s.d.observe(AlarmDiskSnapshot, snapshotWrites, err)
	}
	if err != nil {
		s.removeTmp()
	}
	return err
}

func (s *healthSnapshotSink) Cancel() error {
	err := s.SnapshotSink.Cancel()
	if err != nil || s.failed {
		s.removeTmp()
	}
	return err
}

func (s *healthSnapshotSink) removeTmp() {
	if err := os.RemoveAll(s.tmp); err != nil {
		s.d.alarms.logger.Warn("cannot remove a failed snapshot's temporary directory", "path", s.tmp, "error", err)
	}
}
