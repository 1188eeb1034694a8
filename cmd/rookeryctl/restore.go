package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// Seeding writes what a node would hold after installing a raft snapshot:
// the snapshot store under the data dir with one snapshot whose
// configuration names the new voters. The layout and framing must match
// the cluster package's (snapshots/ under the data dir, the "RKYSNAP1"
// header carrying the applied index, then the fsm snapshot format); they
// are repeated here because cluster does not export them. If cluster grows
// a seeding function, this file should call it instead.
const (
	seedRaftDB       = "raft.db"
	seedWALDir       = "wal"
	seedSnapshotsDir = "snapshots"
	seedTerm         = 1
)

// seedMagic opens every raft snapshot the cluster package writes.
const seedMagic = "RKYSNAP1"

type seedPeer struct{ id, raftAddr, apiAddr string }

func parsePeers(s string) ([]seedPeer, error) {
	var out []seedPeer
	seen := map[string]bool{}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		id, addrs, ok := strings.Cut(p, "=")
		raftAddr, apiAddr, ok2 := strings.Cut(addrs, "/")
		if !ok || !ok2 || id == "" {
			return nil, fmt.Errorf("%q is not id=raft_addr/grpc_addr", p)
		}
		for _, a := range []string{raftAddr, apiAddr} {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("%q: %w", p, err)
			}
		}
		if seen[id] {
			return nil, fmt.Errorf("node %q listed twice", id)
		}
		seen[id] = true
		out = append(out, seedPeer{id, raftAddr, apiAddr})
	}
	return out, nil
}

type seedResult struct {
	revision, index uint64
	mailboxes       int
}

// seedDataDir turns an fsm snapshot into the initial state of one node of a
// new cluster. Every node seeded from the same file and peer list gets the
// same state at the same raft index, so they agree from the start. The
// peer map inside the snapshot is replaced by the new peers' addresses, and
// the raft index is placed after the snapshot's, so new revisions keep
// growing.
func seedDataDir(dir string, snap io.Reader, peers []seedPeer) (seedResult, error) {
	if err := checkEmptyDataDir(dir); err != nil {
		return seedResult{}, err
	}
	store := fsm.New(fsm.DefaultConfig())
	if err := store.Restore(snap); err != nil {
		return seedResult{}, fmt.Errorf("snapshot: %w", err)
	}
	var cmds []fsm.Command
	keep := map[string]bool{}
	for _, p := range peers {
		keep[p.id] = true
		cmds = append(cmds, fsm.Command{Op: fsm.OpSetPeer, Name: p.id, Location: p.apiAddr})
	}
	for id := range store.Peers() {
		if !keep[id] {
			cmds = append(cmds, fsm.Command{Op: fsm.OpSetPeer, Name: id})
		}
	}
	index := store.AppliedIndex() + 1
	for i, r := range store.Apply(index, cmds) {
		if r.Code != fsm.CodeOK {
			return seedResult{}, fmt.Errorf("peer %q: %s", cmds[i].Name, r.Code.Text())
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return seedResult{}, err
	}
	snaps, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
	if err != nil {
		return seedResult{}, fmt.Errorf("snapshot store in %s: %w", dir, err)
	}
	var conf raft.Configuration
	for _, p := range peers {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.id), Address: raft.ServerAddress(p.raftAddr)})
	}
	// Create encodes the legacy peer list through a transport; an
	// in-memory one encodes addresses exactly as the TCP transport does.
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, seedTerm, conf, index, trans)
	if err != nil {
		return seedResult{}, fmt.Errorf("create raft snapshot: %w", err)
	}
	var hdr [16]byte
	copy(hdr[:], seedMagic)
	binary.BigEndian.PutUint64(hdr[8:], index)
	_, err = sink.Write(hdr[:])
	if err == nil {
		_, err = store.Snapshot().WriteTo(sink)
	}
	if err != nil {
		sink.Cancel()
		return seedResult{}, fmt.Errorf("write raft snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return seedResult{}, fmt.Errorf("write raft snapshot: %w", err)
	}
	return seedResult{revision: store.Revision(), index: index, mailboxes: store.Len()}, nil
}

// checkEmptyDataDir refuses to seed over an existing node's state.
func checkEmptyDataDir(dir string) error {
	for _, log := range []string{seedRaftDB, seedWALDir} {
		if _, err := os.Stat(filepath.Join(dir, log)); err == nil {
			return fmt.Errorf("%s already holds raft state (%s); restore needs an empty data dir", dir, log)
		}
	}
	ents, err := os.ReadDir(filepath.Join(dir, seedSnapshotsDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("%s already holds snapshots; restore needs an empty data dir", dir)
	}
	return nil
}
