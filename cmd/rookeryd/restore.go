package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/fsm"
)

// snapshotRestore seeds an empty data directory from a snapshot file
// (rookeryctl snapshot save), offline, before the node first starts. It is
// a rookeryd subcommand, not a rookeryctl one, because it writes raft's
// on-disk formats: the tool that talks to a running cluster over gRPC
// never links raft (as etcd moved this from etcdctl to etcdutl).
func snapshotRestore(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rookeryd snapshot-restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "empty data directory of the node to seed (required; the node's node.data_dir)")
	peers := fs.String("peers", "", "voters of the restored cluster: id=raft_addr/grpc_addr,... (required, same on every node)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: rookeryd snapshot-restore FILE --data-dir DIR --peers LIST\n\n"+restoreProcedure+"\nflags:\n")
		fs.PrintDefaults()
	}
	// FILE may come before or after the flags.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch {
	case len(pos) == 0:
		fmt.Fprint(stdout, restoreProcedure)
		fmt.Fprintln(stderr, "rookeryd snapshot-restore: want FILE")
		return 2
	case len(pos) > 1:
		fmt.Fprintf(stderr, "rookeryd snapshot-restore: want one FILE, got %d\n", len(pos))
		return 2
	case *dataDir == "" || *peers == "":
		fmt.Fprintln(stderr, "rookeryd snapshot-restore: --data-dir and --peers are required")
		return 2
	}
	list, err := parseRestorePeers(*peers)
	if err != nil {
		fmt.Fprintf(stderr, "rookeryd snapshot-restore: --peers: %v\n", err)
		return 2
	}
	f, err := os.Open(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "rookeryd snapshot-restore: %v\n", err)
		return 1
	}
	defer f.Close()
	res, err := seedDataDir(*dataDir, f, list)
	if err != nil {
		fmt.Fprintf(stderr, "rookeryd snapshot-restore: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "seeded %s: revision %d, %d mailboxes, raft index %d, voters %s\nstart the node with the same -raft.peers; it resumes from this state\n",
		*dataDir, res.revision, res.mailboxes, res.index, *peers)
	return 0
}

// parseRestorePeers reads the comma-separated --peers list in raft.peers'
// format; one node listed twice would seed a configuration raft refuses.
func parseRestorePeers(s string) ([]peer, error) {
	entries := strings.Split(s, ",")
	for i := range entries {
		entries[i] = strings.TrimSpace(entries[i])
	}
	list, err := parsePeers(entries)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, p := range list {
		if seen[p.ID] {
			return nil, fmt.Errorf("node %q listed twice", p.ID)
		}
		seen[p.ID] = true
	}
	return list, nil
}

const restoreProcedure = `Restoring a cluster from a snapshot (every node starts from the same state):

  1. rookeryctl snapshot save backup.snap          (from the old cluster, any node)
  2. stop every rookeryd of the cluster to restore; give each node an EMPTY data dir
  3. on every node, with the SAME file and the SAME peer list:
       rookeryd snapshot-restore backup.snap --data-dir DIR \
         --peers n1=RAFT1/GRPC1,n2=RAFT2/GRPC2,n3=RAFT3/GRPC3
     This writes a raft snapshot holding the directory (revision kept, peer
     addresses replaced) and a configuration with those voters.
  4. start every node as usual (same -raft.peers): each resumes from the seeded
     state, elects a leader, and continues with revisions above the snapshot's.
  5. rookeryctl status   (every node at the snapshot's revision)
Watch clients resume from their revision or re-list; nothing else is needed.
`

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
func seedDataDir(dir string, snap io.Reader, peers []peer) (seedResult, error) {
	store := fsm.New(fsm.DefaultConfig())
	if err := store.Restore(snap); err != nil {
		return seedResult{}, fmt.Errorf("snapshot: %w", err)
	}
	var cmds []fsm.Command
	var voters []cluster.Peer
	keep := map[string]bool{}
	for _, p := range peers {
		keep[p.ID] = true
		cmds = append(cmds, fsm.Command{Op: fsm.OpSetPeer, Name: p.ID, Location: p.APIAddr})
		voters = append(voters, cluster.Peer{ID: p.ID, RaftAddr: p.RaftAddr, APIAddr: p.APIAddr})
	}
	for id := range store.Peers() {
		if !keep[id] {
			cmds = append(cmds, fsm.Command{Op: fsm.OpSetPeer, Name: id})
		}
	}
	index := store.AppliedIndex() + 1
	for i, r := range store.Apply(index, cmds) {
		if r.Code != fsm.CodeOK {
			return seedResult{}, fmt.Errorf("peer %q: %s", cmds[i].Name, r.Code)
		}
	}
	if err := cluster.SeedDataDir(dir, store, index, voters); err != nil {
		return seedResult{}, err
	}
	return seedResult{revision: store.Revision(), index: index, mailboxes: store.Len()}, nil
}
