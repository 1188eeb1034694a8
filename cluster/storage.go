package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

const (
	raftDBName   = "raft.db"
	snapshotsDir = "snapshots"
	// logCacheSize keeps recent entries in memory so replication to a
	// slightly lagging follower does not read them back from bolt.
	logCacheSize = 512
	// boltLockTimeout turns "another process holds raft.db" into an error
	// instead of Open blocking forever on the file lock.
	boltLockTimeout = time.Second
)

// storage is the on-disk state of one node.
type storage struct {
	bolt  *raftboltdb.BoltStore
	logs  raft.LogStore // bolt behind a LogCache
	snaps *raft.FileSnapshotStore
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
func openStorage(dir string, retain int, logger *slog.Logger) (*storage, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, raftDBName)
	bolt, err := openCheckedBolt(path)
	if err != nil {
		return nil, err
	}
	logs, err := raft.NewLogCache(logCacheSize, bolt)
	if err != nil {
		_ = bolt.Close()
		return nil, fmt.Errorf("cluster: log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, retain, newHclog(logger, "snapshot"))
	if err != nil {
		_ = bolt.Close()
		return nil, fmt.Errorf("cluster: snapshot store in %s: %w", filepath.Join(dir, snapshotsDir), err)
	}
	return &storage{bolt: bolt, logs: logs, snaps: snaps}, nil
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
	return raft.HasExistingState(s.logs, s.bolt, s.snaps)
}

func (s *storage) close() error {
	return s.bolt.Close()
}
