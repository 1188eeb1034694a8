package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"go.etcd.io/bbolt"
)

const (
	raftDBName   = "raft.db"
	snapshotsDir = "snapshots"
	// logCacheSize keeps recent entries in memory so replication to a
	// slightly lagging follower does not read them back from bolt.
	logCacheSize = 512
	// logCacheMaxData is the largest entry the cache keeps: a bulk
	// import's entries (4,096 commands, ~700 KB each) would otherwise pin
	// 512 × 700 KB until ordinary writes replace them, 36 B per mailbox
	// of a 10M directory (docs/notes/scale.md). Group commit's entries of
	// a few dozen commands stay well below it.
	logCacheMaxData = 64 << 10
	// boltLockTimeout turns "another process holds raft.db" into an error
	// instead of Open blocking forever on the file lock.
	boltLockTimeout = time.Second
)

// The raft log stores a node can use (Config.LogStore).
const (
	// LogStoreBolt keeps log and stable state in one raft-boltdb/v2 file,
	// raft.db. bbolt syncs twice per append.
	LogStoreBolt = "bolt"
	// LogStoreWAL keeps the log in hashicorp/raft-wal segment files under
	// wal/ (stable state in its bbolt meta file): one sync per append.
	LogStoreWAL = "wal"
)

// walDirName is the raft-wal directory under the data dir.
const walDirName = "wal"

// lockFileName is the data dir lock (see lockDataDir).
const lockFileName = "LOCK"

// storage is the on-disk state of one node.
type storage struct {
	logs    raft.LogStore // the chosen store behind a LogCache
	journal *journalStore // raft.journal in front of raft.db; nil without
	stable  raft.StableStore
	snaps   raft.SnapshotStore
	close   func() error
}

// openStorage opens (creating when absent) raft.db and the snapshot
// directory under dir. An unreadable or corrupt raft.db is reported with an
// error naming the file.
//
// bbolt trusts the page structure of its memory-mapped file: a corrupt file
// makes it panic (bad page ids) or fault (reads outside the mapping) rather
// than return an error. Opening and the first reads therefore run on this
// goroutine under recover with faults turned into panics. Corruption that
// only shows up later, in pages raft reads while running, still crashes
// the process.
func openStorage(dir, kind string, journal bool, retain int, logger *slog.Logger) (*storage, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: data dir %s: %w", dir, err)
	}
	lock, err := lockDataDir(dir)
	if err != nil {
		return nil, err
	}
	if err := checkLogStoreKind(dir, kind); err != nil {
		lock.Close()
		return nil, err
	}
	var st *storage
	if kind == LogStoreWAL {
		st, err = openWAL(filepath.Join(dir, walDirName), logger)
	} else {
		st, err = openBoltStorage(filepath.Join(dir, raftDBName), journal, logger)
	}
	if err != nil {
		lock.Close()
		return nil, err
	}
	closeStore := st.close
	st.close = func() error { return errors.Join(closeStore(), lock.Close()) }
	if st.logs, err = newLogCache(st.logs); err != nil {
		_ = st.close()
		return nil, fmt.Errorf("cluster: log cache: %w", err)
	}
	if st.snaps, err = raft.NewFileSnapshotStoreWithLogger(dir, retain, newHclog(logger, "snapshot")); err != nil {
		_ = st.close()
		return nil, fmt.Errorf("cluster: snapshot store in %s: %w", filepath.Join(dir, snapshotsDir), err)
	}
	return st, nil
}

// lockDataDir takes an exclusive lock on dir/LOCK for the life of the
// node, so a second process on the same data dir is refused at once instead
// of blocking on (or, for the WAL's segment files, corrupting) the store.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cluster: data dir lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("cluster: data dir %s is locked by another process (%s): %w", dir, path, err)
	}
	return f, nil
}

// checkLogStoreKind refuses a data dir written by the other log store:
// opening it would start from an empty log and lose the node's state.
func checkLogStoreKind(dir, kind string) error {
	other, otherKind := filepath.Join(dir, walDirName), LogStoreWAL
	if kind == LogStoreWAL {
		other, otherKind = filepath.Join(dir, raftDBName), LogStoreBolt
	}
	if _, err := os.Stat(other); err == nil {
		return fmt.Errorf("cluster: data dir %s holds a %q raft log (%s) but the log store is %q: set it back, or remove the data dir and re-join", dir, otherKind, other, kind)
	}
	return nil
}

// openBoltStorage opens raft.db at path; with journal, appends go through
// raft.journal beside it (journalStore), and whatever a crash left there
// is replayed first.
func openBoltStorage(path string, journal bool, logger *slog.Logger) (*storage, error) {
	journalPath := filepath.Join(filepath.Dir(path), journalName)
	if err := refuseOrphanJournal(path, journalPath); err != nil {
		return nil, err
	}
	bolt, err := openCheckedBolt(path)
	if err != nil {
		return nil, err
	}
	if !journal {
		if err := refuseJournal(journalPath, bolt); err != nil {
			_ = bolt.Close()
			return nil, err
		}
		return &storage{logs: bolt, stable: bolt, close: bolt.Close}, nil
	}
	j, err := openJournal(journalPath, bolt, logger)
	if err != nil {
		_ = bolt.Close()
		return nil, err
	}
	closeAll := func() error { return errors.Join(j.Close(), bolt.Close()) }
	return &storage{logs: j, journal: j, stable: bolt, close: closeAll}, nil
}

// refuseOrphanJournal stops a node whose raft.db is gone (removed by hand)
// while raft.journal still holds entries: replaying them into a new
// raft.db would start the node from the middle of a log.
func refuseOrphanJournal(dbPath, journalPath string) error {
	if _, err := os.Stat(dbPath); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	held, err := journalHoldsEntries(journalPath, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("cluster: raft journal %s cannot be read while %s is missing (refusing to start; restore raft.db, or remove the whole data dir and re-join): %w", journalPath, dbPath, err)
	case held:
		return fmt.Errorf("cluster: raft journal %s holds entries but %s is missing (refusing to start; restore raft.db, or remove the whole data dir and re-join)", journalPath, dbPath)
	}
	return nil
}

// refuseJournal stops a node told to write raft.db directly from starting
// on a journal that may hold entries raft.db lacks (a crash with the
// journal on): raft.db alone would be missing acknowledged entries.
func refuseJournal(path string, bolt raft.LogStore) error {
	stored, err := bolt.LastIndex()
	if err != nil {
		return err
	}
	held, err := journalHoldsEntries(path, stored)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("cluster: raft journal %s: %w (start once with the journal on, raft.bolt_direct = false, to have it checked)", path, err)
	case held:
		return fmt.Errorf("cluster: raft journal %s holds entries not yet in raft.db: start once with the journal on (raft.bolt_direct = false) to replay it", path)
	}
	return os.Remove(path)
}

func openWAL(dir string, logger *slog.Logger) (*storage, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: raft wal %s: %w", dir, err)
	}
	// raft-wal v0.4.0's Close leaves its bbolt meta file open (and
	// locked); owning the meta store lets close release it.
	meta := &metadb.BoltMetaDB{}
	if err := repairWAL(dir, meta, logger); err != nil {
		_ = meta.Close()
		return nil, fmt.Errorf("cluster: raft wal %s cannot be repaired (refusing to start; remove the data dir and re-join): %w", dir, err)
	}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithLogger(newHclog(logger, "wal")))
	if err != nil {
		_ = meta.Close()
		return nil, fmt.Errorf("cluster: raft wal %s cannot be opened (refusing to start; restore the data dir, or remove it and re-join): %w", dir, err)
	}
	closeAll := func() error { return errors.Join(w.Close(), meta.Close()) }
	return &storage{logs: w, stable: w, close: closeAll}, nil
}

// openCheckedBolt opens raft.db and probes it; see openStorage.
func openCheckedBolt(path string) (store *raftboltdb.BoltStore, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// The half-open handle is abandoned: closing it could fault too.
			store, err = nil, fmt.Errorf("cluster: raft store %s is corrupt (refusing to start; restore the data dir, or remove it and re-join): bolt: %v", path, r)
		}
	}()
	if store, err = openBolt(path); err != nil {
		return nil, err
	}
	if err := probeBolt(store); err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("cluster: raft store %s is corrupt or unreadable (refusing to start; restore the data dir, or remove it and re-join): %w", path, err)
	}
	return store, nil
}

func openBolt(path string) (*raftboltdb.BoltStore, error) {
	store, err := raftboltdb.New(raftboltdb.Options{
		Path:        path,
		BoltOptions: &bbolt.Options{Timeout: boltLockTimeout},
	})
	switch {
	case err == nil:
		return store, nil
	case errors.Is(err, bbolt.ErrTimeout):
		return nil, fmt.Errorf("cluster: raft store %s is locked by another process: %w", path, err)
	case errors.Is(err, bbolt.ErrInvalid), errors.Is(err, bbolt.ErrVersionMismatch), errors.Is(err, bbolt.ErrChecksum):
		return nil, fmt.Errorf("cluster: raft store %s is corrupt or not a raft store (refusing to start): %w", path, err)
	default:
		return nil, fmt.Errorf("cluster: raft store %s cannot be opened: %w", path, err)
	}
}

// probeBolt reads what raft reads first on start: the stable keys, the log
// bounds and the entries at both ends.
func probeBolt(b *raftboltdb.BoltStore) error {
	if _, err := b.GetUint64([]byte("CurrentTerm")); err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return fmt.Errorf("read current term: %w", err)
	}
	first, err := b.FirstIndex()
	if err != nil {
		return fmt.Errorf("read first index: %w", err)
	}
	last, err := b.LastIndex()
	if err != nil {
		return fmt.Errorf("read last index: %w", err)
	}
	if first > last {
		return fmt.Errorf("log bounds inverted: first %d > last %d", first, last)
	}
	for _, idx := range []uint64{first, last} {
		if idx == 0 {
			continue
		}
		var l raft.Log
		if err := b.GetLog(idx, &l); err != nil {
			return fmt.Errorf("read log %d: %w", idx, err)
		}
	}
	return nil
}

func (s *storage) hasState() (bool, error) {
	return raft.HasExistingState(s.logs, s.stable, s.snaps)
}

// logCache is raft's LogCache for ordinary entries; appends holding an
// entry over logCacheMaxData go to the store alone. Skipping the cache
// leaves no stale copy behind: the cache answers only for the index it
// holds, and an index is written again only after DeleteRange, which
// empties it.
type logCache struct {
	*raft.LogCache
	store raft.LogStore
}

func newLogCache(store raft.LogStore) (*logCache, error) {
	c, err := raft.NewLogCache(logCacheSize, store)
	if err != nil {
		return nil, err
	}
	return &logCache{LogCache: c, store: store}, nil
}

func (c *logCache) StoreLog(l *raft.Log) error { return c.StoreLogs([]*raft.Log{l}) }

func (c *logCache) StoreLogs(logs []*raft.Log) error {
	for _, l := range logs {
		if len(l.Data) > logCacheMaxData {
			return c.store.StoreLogs(logs)
		}
	}
	return c.LogCache.StoreLogs(logs)
}
