package cluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

const (
	// journalName is the append journal beside raft.db.
	journalName = "raft.journal"
	// journalCheckpointEntries and journalCheckpointBytes bound what the
	// journal holds before its entries are written into raft.db in one
	// bbolt transaction: the memory the store keeps them in, and the
	// bytes a restart replays.
	journalCheckpointEntries = 256
	journalCheckpointBytes   = 8 << 20
	// journalPendingLimit is how many entries the journal holds while
	// checkpoints fail before appends fail too.
	journalPendingLimit = 4 * journalCheckpointEntries
	// journalGrow is the step in which the journal file is allocated,
	// filled with zeros ahead of the appends that will overwrite them. An
	// append that extends a file makes fdatasync commit the filesystem's
	// metadata as well as the data; one that overwrites written blocks
	// syncs the data alone, about 40 % faster on this project's test disk
	// (docs/log-journal.md).
	journalGrow = 1 << 20
	// journalShrinkAbove is the file size past which a wipe cuts the file
	// back to journalGrow: a bulk import's batches can grow it well past
	// what a checkpoint lets the journal hold.
	journalShrinkAbove = 2 * journalCheckpointBytes
)

// journalStore is raft's log store when the log lives in raft.db: each
// append is one write and one fdatasync of raft.journal, and every
// journalCheckpointEntries entries the journal is written into raft.db in
// one bbolt transaction and wiped. The file stays allocated and zero-filled
// past its batches, so appends overwrite blocks the filesystem already
// holds.
//
// bbolt syncs twice per transaction (its pages, then its meta page) and
// rewrites the B-tree's path to the new keys; a replicated write waits for
// that on the leader and on a follower, and at one connection those syncs
// are most of a write's latency (docs/log-journal.md). The journal keeps
// raft.db the store of record (snapshots, start-up checks, every tool
// reading it) while an append pays one sync.
//
// Invariant: raft.db holds the log up to some index B; the journal holds
// the entries after B (pending, also kept in memory), and possibly entries
// up to B that a checkpoint wrote but did not yet wipe from the file. Open
// replays the journal into raft.db, so a crash at any point loses nothing
// synced; Close checkpoints and removes the journal, so a cleanly stopped
// node leaves raft.db alone.
type journalStore struct {
	bolt   raft.LogStore
	path   string
	logger *slog.Logger
	// observe, when set before raft starts, is told of every checkpoint.
	observe func(time.Duration, int, error)

	// writeMu serializes the calls that change the log (appends,
	// checkpoints, deletes, Close) and guards the fields below mu.
	writeMu  sync.Mutex
	f        *os.File
	size     int64  // bytes of batches at the start of the file
	capacity int64  // the file's length; it holds zeros from size on
	buf      []byte // reused encoding buffer
	broken   error  // a write that could not be undone; every later append fails with it

	// mu guards pending, which readers use while an append syncs.
	mu      sync.RWMutex
	pending []*raft.Log // entries after raft.db's last, in order
}

// openJournal opens (creating) the journal at path in front of bolt and
// replays what a crash left in it into bolt.
func openJournal(path string, bolt raft.LogStore, logger *slog.Logger) (*journalStore, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft journal %s: %w", path, err)
	}
	j := &journalStore{bolt: bolt, path: path, logger: logger, f: f}
	err = j.recover()
	if err == nil {
		err = j.reserve(journalGrow)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("cluster: raft journal %s: %w", path, err)
	}
	// The file's name must survive a crash for its entries to.
	if err := syncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, fmt.Errorf("cluster: raft journal %s: %w", path, err)
	}
	return j, nil
}

// recover writes the journal's entries that raft.db lacks into it, then
// wipes the journal.
func (j *journalStore) recover() error {
	data, err := io.ReadAll(j.f)
	if err != nil {
		return err
	}
	j.capacity = int64(len(data))
	if len(data) == 0 {
		return nil
	}
	stored, err := j.bolt.LastIndex()
	if err != nil {
		return err
	}
	scan, err := scanJournal(data, stored)
	if err != nil {
		return fmt.Errorf("%w (refusing to start; restore the data dir, or remove it and re-join)", err)
	}
	if scan.wiped {
		j.logger.Info("raft journal: skipping batches a checkpoint had already written into raft.db (a crash interrupted the wipe after it)", "file", j.path)
	}
	if scan.torn > 0 {
		j.logger.Warn("raft journal: dropping the tail a crash left unfinished (an append that was never acknowledged)",
			"file", j.path, "offset", scan.end, "bytes", scan.torn)
	}
	replay, err := j.unstored(scan.logs)
	if err != nil {
		return err
	}
	for len(replay) > 0 {
		n := min(len(replay), journalCheckpointEntries)
		if err := j.bolt.StoreLogs(replay[:n]); err != nil {
			return fmt.Errorf("replaying into raft.db: %w", err)
		}
		replay = replay[n:]
	}
	if len(scan.logs) > 0 {
		j.logger.Info("raft journal: replayed into raft.db", "file", j.path, "entries", len(scan.logs))
	}
	j.size = scan.end + scan.torn
	return j.wipe()
}

// unstored returns the journal's entries after raft.db's last. The ones at
// or below it must be the same entries raft.db holds, where it still does.
func (j *journalStore) unstored(logs []*raft.Log) ([]*raft.Log, error) {
	last, err := j.bolt.LastIndex()
	if err != nil {
		return nil, err
	}
	if len(logs) > 0 && last > 0 && logs[0].Index > last+1 {
		return nil, fmt.Errorf("%w: it starts at entry %d but raft.db ends at %d", errJournalCorrupt, logs[0].Index, last)
	}
	for i, l := range logs {
		if l.Index > last {
			return logs[i:], nil
		}
		var stored raft.Log
		err := j.bolt.GetLog(l.Index, &stored)
		if errors.Is(err, raft.ErrLogNotFound) {
			continue // compacted since
		}
		if err != nil {
			return nil, err
		}
		if stored.Term != l.Term {
			return nil, fmt.Errorf("%w: entry %d has term %d, raft.db's has %d", errJournalCorrupt, l.Index, l.Term, stored.Term)
		}
	}
	return nil, nil
}

func (j *journalStore) FirstIndex() (uint64, error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	first, err := j.bolt.FirstIndex()
	if err != nil || first != 0 || len(j.pending) == 0 {
		return first, err
	}
	return j.pending[0].Index, nil
}

func (j *journalStore) LastIndex() (uint64, error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	if n := len(j.pending); n > 0 {
		return j.pending[n-1].Index, nil
	}
	return j.bolt.LastIndex()
}

func (j *journalStore) GetLog(index uint64, out *raft.Log) error {
	j.mu.RLock()
	if n := len(j.pending); n > 0 && index >= j.pending[0].Index && index <= j.pending[n-1].Index {
		*out = *j.pending[index-j.pending[0].Index]
		j.mu.RUnlock()
		return nil
	}
	j.mu.RUnlock()
	return j.bolt.GetLog(index, out)
}

func (j *journalStore) StoreLog(l *raft.Log) error { return j.StoreLogs([]*raft.Log{l}) }

// StoreLogs appends logs to the journal with one write and one fdatasync.
// An append that does not continue the log (raft does not make one, but
// raft-boltdb accepted it) checkpoints and goes to raft.db directly.
func (j *journalStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	j.writeMu.Lock()
	defer j.writeMu.Unlock()
	if j.broken != nil {
		return j.broken
	}
	if !j.continues(logs) {
		if err := j.checkpoint(); err != nil {
			return err
		}
		return j.bolt.StoreLogs(logs)
	}
	if len(j.pending) >= journalPendingLimit {
		// Checkpoints have failed for a while (raft.db cannot be
		// written): refuse the append rather than hold ever more.
		if err := j.checkpointObserved(); err != nil {
			return err
		}
	}
	if err := j.append(logs); err != nil {
		return err
	}
	j.mu.Lock()
	j.pending = append(j.pending, logs...)
	j.mu.Unlock()
	if len(j.pending) >= journalCheckpointEntries || j.size >= journalCheckpointBytes {
		// The entries are durable in the journal: a failed checkpoint is
		// retried with the next append.
		if err := j.checkpointObserved(); err != nil {
			j.logger.Warn("raft journal: checkpoint into raft.db failed; retrying with the next append", "file", j.path, "entries", len(j.pending), "err", err)
		}
	}
	return nil
}

// checkpointObserved is checkpoint, reported to observe.
func (j *journalStore) checkpointObserved() error {
	start, entries := time.Now(), len(j.pending)
	err := j.checkpoint()
	if j.observe != nil {
		j.observe(time.Since(start), entries, err)
	}
	return err
}

// continues reports whether logs are consecutive and follow the last
// entry held, pending or in raft.db.
func (j *journalStore) continues(logs []*raft.Log) bool {
	for i := 1; i < len(logs); i++ {
		if logs[i].Index != logs[i-1].Index+1 {
			return false
		}
	}
	var last uint64
	if n := len(j.pending); n > 0 {
		last = j.pending[n-1].Index
	} else {
		var err error
		if last, err = j.bolt.LastIndex(); err != nil {
			return false
		}
	}
	return last == 0 || logs[0].Index == last+1
}

// append writes one batch after the last and syncs it, first allocating
// more of the file when the batch does not fit. A failed write is cut off
// again, so the next append does not land behind garbage; if even that
// fails, the journal is broken until a restart.
func (j *journalStore) append(logs []*raft.Log) error {
	j.buf = appendJournalBatch(j.buf[:0], logs)
	var err error
	if end := j.size + int64(len(j.buf)); end > j.capacity {
		err = j.extend(end)
	}
	if err == nil {
		_, err = j.f.WriteAt(j.buf, j.size)
	}
	if err == nil {
		err = fdatasync(j.f)
	}
	if err != nil {
		j.capacity = j.size
		if terr := j.f.Truncate(j.size); terr != nil {
			j.broken = fmt.Errorf("cluster: raft journal %s cannot be written and could not be cut back after a failed append (restart the node): %w", j.path, errors.Join(err, terr))
		}
		return fmt.Errorf("cluster: raft journal %s: %w", j.path, err)
	}
	j.size += int64(len(j.buf))
	if cap(j.buf) > journalCheckpointBytes {
		j.buf = nil // do not pin a bulk import's buffer
	}
	return nil
}

// checkpoint writes the pending entries into raft.db and wipes the
// journal. Called with writeMu held.
func (j *journalStore) checkpoint() error {
	if err := j.storePending(); err != nil {
		return err
	}
	return j.wipe()
}

// storePending writes the pending entries into raft.db. Readers keep
// finding them in pending until raft.db has them.
func (j *journalStore) storePending() error {
	if len(j.pending) == 0 {
		return nil
	}
	if err := j.bolt.StoreLogs(j.pending); err != nil {
		return fmt.Errorf("cluster: raft journal %s: checkpoint into raft.db: %w", j.path, err)
	}
	j.mu.Lock()
	j.pending = nil
	j.mu.Unlock()
	return nil
}

// wipe empties the journal durably by overwriting its batches with zeros,
// so the file stays allocated. It must be synced before the next append:
// batches written over a half-wiped file could be followed by intact old
// ones. A crash during the wipe leaves old batches that raft.db holds, and
// scanJournal skips those.
func (j *journalStore) wipe() error {
	if j.size == 0 {
		return nil
	}
	var err error
	if j.capacity > journalShrinkAbove {
		j.capacity = journalGrow
		err = j.f.Truncate(j.capacity)
	}
	if err == nil {
		err = writeZeros(j.f, 0, min(j.size, j.capacity))
	}
	if err == nil {
		err = fdatasync(j.f)
	}
	if err != nil {
		return fmt.Errorf("cluster: raft journal %s: %w", j.path, err)
	}
	j.size = 0
	return nil
}

// reserve allocates the file up to n bytes of zeros, durably.
func (j *journalStore) reserve(n int64) error {
	if j.capacity >= n {
		return nil
	}
	if err := j.extend(n); err != nil {
		return err
	}
	return fdatasync(j.f)
}

// extend fills the file with zeros from its end to the journalGrow step
// at or after end. The append that needs the room syncs them.
func (j *journalStore) extend(end int64) error {
	grown := (end + journalGrow - 1) / journalGrow * journalGrow
	if err := writeZeros(j.f, j.capacity, grown-j.capacity); err != nil {
		return err
	}
	j.capacity = grown
	return nil
}

// writeZeros writes n zero bytes to f at off.
func writeZeros(f *os.File, off, n int64) error {
	zeros := make([]byte, min(n, 1<<16))
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := f.WriteAt(zeros[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

// DeleteRange removes entries from raft.db. Removing any pending entry (a
// follower cutting a conflicting tail, or every entry before a snapshot
// install) first checkpoints, so raft.db alone holds the log when it
// changes and a replay cannot bring a removed entry back.
func (j *journalStore) DeleteRange(min, max uint64) error {
	j.writeMu.Lock()
	defer j.writeMu.Unlock()
	if n := len(j.pending); n > 0 && max >= j.pending[0].Index {
		if err := j.checkpoint(); err != nil {
			return err
		}
	}
	return j.bolt.DeleteRange(min, max)
}

// Close writes the pending entries into raft.db and removes the journal;
// raft.db is left holding the whole log. It does not close raft.db.
func (j *journalStore) Close() error {
	j.writeMu.Lock()
	defer j.writeMu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.broken
	if err == nil {
		err = j.storePending()
	}
	err = errors.Join(err, j.f.Close())
	j.f = nil
	if err == nil {
		err = os.Remove(j.path)
	}
	return err
}

// journalHoldsEntries reports whether the journal file at path holds
// entries after stored, raft.db's last index. A damaged journal is an
// error: it may hold some.
func journalHoldsEntries(path string, stored uint64) (bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	scan, err := scanJournal(data, stored)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(scan.logs, func(l *raft.Log) bool { return l.Index > stored }), nil
}

func fdatasync(f *os.File) error {
	return syscall.Fdatasync(int(f.Fd()))
}

// syncDir makes the creation or removal of a file in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
