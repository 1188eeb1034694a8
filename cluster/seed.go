package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// seedTerm is the raft term of a seeded snapshot: the new cluster's first
// election moves past it.
const seedTerm = 1

// SeedDataDir writes into the empty data directory dir what a node would
// hold after installing a raft snapshot: one snapshot of store at raft index
// index, in this package's snapshot format, whose configuration makes
// voters the cluster's members. Every node seeded with the same store,
// index and voters starts from the same state and agrees from its first
// election; the node resumes from the snapshot when it opens. It is offline
// work for `rookeryd snapshot-restore`, before the node first starts, and
// refuses a directory that already holds raft state.
func SeedDataDir(dir string, store *fsm.Store, index uint64, voters []Peer) error {
	if err := checkEmptyDataDir(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	snaps, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
	if err != nil {
		return fmt.Errorf("cluster: snapshot store in %s: %w", dir, err)
	}
	var conf raft.Configuration
	for _, p := range voters {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
	}
	// Create encodes the legacy peer list through a transport; an
	// in-memory one encodes addresses exactly as the network one does.
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, seedTerm, conf, index, trans)
	if err != nil {
		return fmt.Errorf("cluster: create raft snapshot: %w", err)
	}
	snap := &fsmSnapshot{snap: store.Snapshot(), applied: index}
	return snap.Persist(sink)
}

// checkEmptyDataDir refuses to seed over an existing node's state.
func checkEmptyDataDir(dir string) error {
	for _, log := range []string{raftDBName, journalName, walDirName} {
		if _, err := os.Stat(filepath.Join(dir, log)); err == nil {
			return fmt.Errorf("%s already holds raft state (%s); restore needs an empty data dir", dir, log)
		}
	}
	ents, err := os.ReadDir(filepath.Join(dir, snapshotsDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("%s already holds snapshots; restore needs an empty data dir", dir)
	}
	return nil
}
