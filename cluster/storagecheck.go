package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// openVerifiedStorage opens the node's storage and checks it before raft
// reads any of it (docs/integrity.md): a raft.db shorter than its own meta
// page says is refused before bbolt maps it (reading a page past the end of
// a mapped file is a SIGBUS no Go code can recover from), and so is a
// raft-wal tail segment whose damage raft-wal would take for a torn write
// (checkWALTail); interrupted snapshot temp dirs are removed; every log
// entry is read and its checksum verified; the snapshots are read and
// verified newest first up to the one raft will restore. Damage ends in an
// error naming the file and the way out, or,
// for a damaged snapshot whose entries the log still holds, in recovery
// that is logged. Panics and memory faults of the store libraries while
// opening become errors too.
func openVerifiedStorage(dir, kind string, journal bool, retain int, logger *slog.Logger) (*storage, error) {
	// The file checks run before the store is opened (and locked): a
	// probe of the lock first, so a data dir in use by another process is
	// reported as that rather than as damage seen mid-write.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: data dir %s: %w", dir, err)
	}
	lock, err := lockDataDir(dir)
	if err != nil {
		return nil, err
	}
	if err := lock.Close(); err != nil {
		return nil, fmt.Errorf("cluster: data dir lock in %s: %w", dir, err)
	}
	check := func() error { return checkBoltSize(filepath.Join(dir, raftDBName)) }
	if kind == LogStoreWAL {
		check = func() error { return checkWALTail(filepath.Join(dir, walDirName)) }
	}
	if err := check(); err != nil {
		return nil, fmt.Errorf("%w%s", err, wayOut(dir))
	}
	st, err := guard(dir, func() (*storage, error) { return openStorage(dir, kind, journal, retain, logger) })
	if err != nil {
		return nil, err
	}
	verify := func() (*storage, error) {
		if err := removeSnapshotTemps(dir, logger); err != nil {
			return nil, err
		}
		if err := verifyLog(st.logs, newestSnapshotIndex(st.snaps), logFileOf(dir, kind), logger); err != nil {
			return nil, fmt.Errorf("%w%s", err, wayOut(dir))
		}
		return st, verifySnapshots(dir, st.logs, logger)
	}
	if _, err := guard(dir, verify); err != nil {
		_ = st.close()
		return nil, err
	}
	return st, nil
}

// guard runs f with memory faults turned into panics (on this goroutine,
// where bbolt's mapped reads happen) and panics turned into errors: the
// store libraries trust their files and panic on some damage.
func guard(dir string, f func() (*storage, error)) (st *storage, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			st, err = nil, fmt.Errorf("cluster: raft state in %s is damaged (reading it panicked: %v)%s", dir, r, wayOut(dir))
		}
	}()
	return f()
}

// newRaftGuarded is raft.NewRaft with a panic turned into an error: raft
// panics when a log entry it needs is missing or unreadable (for example
// after falling back to an older snapshot than the log covers).
func newRaftGuarded(conf *raft.Config, f raft.FSM, st *storage, trans raft.Transport, dir string) (r *raft.Raft, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("raft panicked reading its state: %v%s", p, wayOut(dir))
		}
	}()
	return raft.NewRaft(conf, f, st.logs, st.stable, st.snaps, trans)
}

// removeSnapshotTemps deletes snapshot directories left by an interrupted
// snapshot (raft writes into "<id>.tmp" and renames when done). Raft
// ignores them and never removes them; at a million mailboxes each is
// about 13 MB. It runs once this process holds the data dir lock, so no
// snapshot can be in progress.
func removeSnapshotTemps(dir string, logger *slog.Logger) error {
	entries, err := os.ReadDir(filepath.Join(dir, snapshotsDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: snapshot dir %s: %w", filepath.Join(dir, snapshotsDir), err)
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		path := filepath.Join(dir, snapshotsDir, e.Name())
		if err := os.RemoveAll(path); err != nil {
			return fmt.Errorf("cluster: remove interrupted snapshot %s: %w", path, err)
		}
		logger.Warn("removed interrupted snapshot", "dir", path)
	}
	return nil
}

// bbolt's file layout, as far as checkBoltSize reads it: pages 0 and 1
// each hold a meta (after a 16-byte page header) of magic, version, page
// size, flags, root bucket (2×8), freelist page, page count (the high
// water mark), txid and an FNV-64a checksum of the fields before it.
const (
	boltMagic      = 0xED0CDAED
	boltPageHeader = 16
	boltMetaLen    = 64
	boltMinPage    = 512
)

// checkBoltSize refuses a raft.db shorter than the pages its newest valid
// meta page says it holds. bbolt maps the file and trusts those pages; one
// past the end of the file is a SIGBUS that kills the process. A file
// with no valid meta page is left to bbolt, which reports it as invalid.
func checkBoltSize(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: raft store %s cannot be opened: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cluster: raft store %s: %w", path, err)
	}
	size := fi.Size()
	if size == 0 {
		return nil // bbolt initialises an empty file
	}
	var best struct {
		ok              bool
		txid, pages, ps uint64
	}
	buf := make([]byte, boltPageHeader+boltMetaLen)
	pageSize := int64(0)
	for i := 0; i < 2; i++ {
		// Meta page 1 sits one page size in; the page size is read
		// from meta page 0 (or the OS page size if that is damaged).
		off := int64(0)
		if i == 1 {
			if pageSize == 0 {
				pageSize = int64(os.Getpagesize())
			}
			off = pageSize
		}
		if _, err := f.ReadAt(buf, off); err != nil {
			continue
		}
		m := buf[boltPageHeader:]
		if binary.LittleEndian.Uint32(m[0:]) != boltMagic {
			continue
		}
		h := fnv.New64a()
		h.Write(m[:56])
		if h.Sum64() != binary.LittleEndian.Uint64(m[56:]) {
			continue
		}
		ps := uint64(binary.LittleEndian.Uint32(m[8:]))
		if ps < boltMinPage {
			continue
		}
		if i == 0 {
			pageSize = int64(ps)
		}
		txid, pages := binary.LittleEndian.Uint64(m[48:]), binary.LittleEndian.Uint64(m[40:])
		if !best.ok || txid > best.txid {
			best.ok, best.txid, best.pages, best.ps = true, txid, pages, ps
		}
	}
	if !best.ok {
		return nil
	}
	if want := best.pages * best.ps; uint64(size) < want {
		return fmt.Errorf("cluster: raft store %s is corrupt (truncated): it holds %d bytes but its meta page (txid %d) says %d pages of %d bytes (%d bytes) (refusing to start)",
			path, size, best.txid, best.pages, best.ps, want)
	}
	return nil
}

// logFileOf returns a function naming the file that holds a log index.
func logFileOf(dir, kind string) func(uint64) string {
	if kind != LogStoreWAL {
		path := filepath.Join(dir, raftDBName)
		return func(uint64) string { return path }
	}
	walDir := filepath.Join(dir, walDirName)
	return func(index uint64) string { return walSegmentOf(walDir, index) }
}

// walSegmentOf names the raft-wal segment file holding index: segments are
// named "<base index>-<id>.wal", and an index lives in the segment with
// the highest base index not above it.
func walSegmentOf(walDir string, index uint64) string {
	entries, _ := os.ReadDir(walDir)
	best, bestBase := walDir, uint64(0)
	for _, e := range entries {
		name := e.Name()
		base, _, ok := strings.Cut(strings.TrimSuffix(name, ".wal"), "-")
		if !strings.HasSuffix(name, ".wal") || !ok {
			continue
		}
		b, err := strconv.ParseUint(base, 10, 64)
		if err != nil || b > index || b < bestBase {
			continue
		}
		best, bestBase = filepath.Join(walDir, name), b
	}
	return best
}

// newestSnapshotIndex is the index of the newest snapshot on disk, 0 when
// there is none (or the list cannot be read; verifySnapshots reports that).
func newestSnapshotIndex(snaps raft.SnapshotStore) uint64 {
	metas, err := snaps.List()
	if err != nil || len(metas) == 0 {
		return 0
	}
	return metas[0].Index
}

// verifyLog reads every entry of the log and checks it as raft and the
// state machine will: readable, at its index, terms never decreasing, and
// a command or configuration that decodes (commands carry a CRC-32C). An
// entry that fails would stop the node later, or, before checksums, be
// applied as something else; here it refuses the start with the file and
// index instead.
//
// Entries at or below snapIndex (the newest snapshot) may be missing:
// after a follower installs a snapshot, raft appends the entries that
// follow it while older entries below the snapshot stay (they are only
// trimmed by the next compaction), leaving a hole raft never reads.
func verifyLog(logs raft.LogStore, snapIndex uint64, fileOf func(uint64) string, logger *slog.Logger) error {
	first, err := logs.FirstIndex()
	if err != nil {
		return fmt.Errorf("cluster: raft log %s: read first index: %w", fileOf(0), err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return fmt.Errorf("cluster: raft log %s: read last index: %w", fileOf(0), err)
	}
	if last == 0 {
		return nil
	}
	if first == 0 || first > last {
		return fmt.Errorf("cluster: raft log %s is damaged: bounds %d..%d (refusing to start)", fileOf(0), first, last)
	}
	start := time.Now()
	var term uint64
	for i := first; i <= last; i++ {
		var l raft.Log
		err := logs.GetLog(i, &l)
		if errors.Is(err, raft.ErrLogNotFound) && i <= snapIndex {
			continue
		}
		if err == nil {
			err = checkEntry(&l, i, term)
		}
		if err != nil {
			return fmt.Errorf("cluster: raft log %s is damaged at entry %d of %d..%d: %w (refusing to start)", fileOf(i), i, first, last, err)
		}
		term = l.Term
	}
	logger.Info("raft log verified", "entries", last-first+1, "first", first, "last", last, "took", time.Since(start))
	return nil
}

func checkEntry(l *raft.Log, index, prevTerm uint64) (err error) {
	switch {
	case l.Index != index:
		return fmt.Errorf("entry holds index %d", l.Index)
	case l.Term < prevTerm:
		return fmt.Errorf("term %d after term %d", l.Term, prevTerm)
	}
	switch l.Type {
	case raft.LogCommand:
		if _, err := fsm.DecodeCommands(l.Data); err != nil {
			return fmt.Errorf("term %d: %w", l.Term, err)
		}
	case raft.LogConfiguration:
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("term %d: configuration does not decode: %v", l.Term, r)
			}
		}()
		raft.DecodeConfiguration(l.Data)
	}
	return nil
}

// snapshotOnDisk is one snapshot directory and what verifying it found.
type snapshotOnDisk struct {
	id          string
	path        string
	term, index uint64
	damage      error // nil if intact
}

// verifySnapshots checks the snapshots in dir/snapshots, newest first, up
// to the first intact one (readSnapshots), completely: meta.json, the size
// and CRC-64 raft recorded, the adapter header's CRC-32C and the store
// format's CRC-32C trailer.
//
// Raft tries snapshots newest first and silently skips one whose meta.json
// does not parse; after a damaged newest snapshot it would start from an
// older one, which is only correct if the log still holds every entry
// after it. So: a damaged newest snapshot is
// moved aside too if the log covers everything from the newest intact
// snapshot (or index 1) up to it, and the start goes on; otherwise the
// node refuses to start, naming the snapshot.
func verifySnapshots(dir string, logs raft.LogStore, logger *slog.Logger) error {
	snaps, err := readSnapshots(filepath.Join(dir, snapshotsDir))
	if err != nil {
		return err
	}
	var damaged []snapshotOnDisk
	var intact uint64 // index of the newest intact snapshot
	newestDamaged := -1
	for i, s := range snaps {
		if s.damage == nil {
			if intact == 0 {
				intact = s.index
			}
			continue
		}
		damaged = append(damaged, s)
		if intact == 0 && newestDamaged < 0 {
			newestDamaged = i
		}
	}
	if len(damaged) == 0 {
		return nil
	}
	if newestDamaged >= 0 {
		bad := snaps[newestDamaged]
		first, err := logs.FirstIndex()
		if err != nil {
			return fmt.Errorf("cluster: read first log index: %w", err)
		}
		last, err := logs.LastIndex()
		if err != nil {
			return fmt.Errorf("cluster: read last log index: %w", err)
		}
		if first == 0 || first > intact+1 || last < bad.index {
			return fmt.Errorf("cluster: snapshot %s is damaged: %w; the log (entries %d..%d) does not hold what it covers after %s (refusing to start)%s",
				bad.path, bad.damage, first, last, olderName(intact), wayOut(dir))
		}
		logger.Warn("newest snapshot is damaged; the log still holds its entries: recovering from the log",
			"snapshot", bad.path, "damage", bad.damage, "from", olderName(intact), "log_first", first, "log_last", last)
	}
	for _, s := range damaged {
		to, err := moveAside(dir, s)
		if err != nil {
			return err
		}
		logger.Warn("damaged snapshot moved aside; it is never used", "snapshot", s.path, "damage", s.damage, "moved_to", to)
	}
	return nil
}

func olderName(intact uint64) string {
	if intact == 0 {
		return "index 0 (no intact snapshot)"
	}
	return fmt.Sprintf("the newest intact snapshot at index %d", intact)
}

// damagedDir holds snapshots found damaged, for the operator to inspect.
const damagedDir = "snapshots.damaged"

func moveAside(dir string, s snapshotOnDisk) (string, error) {
	to := filepath.Join(dir, damagedDir, s.id)
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return "", fmt.Errorf("cluster: move damaged snapshot %s aside: %w", s.path, err)
	}
	if _, err := os.Stat(to); err == nil {
		to += "." + strconv.FormatInt(time.Now().UnixNano(), 10)
	}
	if err := os.Rename(s.path, to); err != nil {
		return "", fmt.Errorf("cluster: move damaged snapshot %s aside: %w", s.path, err)
	}
	return to, nil
}

// readSnapshots returns the snapshot directories newest first, in raft's
// order (term, index, id), verifying them in that order up to the first
// intact one. Raft restores that one and never reads the older ones, so
// they are returned unchecked (damage nil): at ten million mailboxes each
// check reads about 280 MB.
func readSnapshots(snapDir string) ([]snapshotOnDisk, error) {
	entries, err := os.ReadDir(snapDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: snapshot dir %s: %w", snapDir, err)
	}
	var out []snapshotOnDisk
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		// Term and index come from the directory name
		// ("<term>-<index>-<ms>"); verify checks meta.json agrees.
		s := snapshotOnDisk{id: e.Name(), path: filepath.Join(snapDir, e.Name())}
		if parts := strings.Split(s.id, "-"); len(parts) == 3 {
			s.term, _ = strconv.ParseUint(parts[0], 10, 64)
			s.index, _ = strconv.ParseUint(parts[1], 10, 64)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.term != b.term {
			return a.term > b.term
		}
		if a.index != b.index {
			return a.index > b.index
		}
		return a.id > b.id
	})
	for i := range out {
		if out[i].verify(); out[i].damage == nil {
			break
		}
	}
	return out, nil
}

// verify checks one snapshot directory, recording what it finds in
// s.damage.
func (s *snapshotOnDisk) verify() {
	meta, err := readSnapshotMeta(filepath.Join(s.path, "meta.json"))
	if err != nil {
		s.damage = err
		return
	}
	if meta.ID != s.id || meta.Term != s.term || meta.Index != s.index {
		s.damage = fmt.Errorf("meta.json names snapshot %q (term %d, index %d), not its directory", meta.ID, meta.Term, meta.Index)
		return
	}
	s.damage = verifySnapshotState(filepath.Join(s.path, "state.bin"), meta)
}
