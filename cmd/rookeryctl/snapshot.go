package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/rookery/rookery/fsm"
)

func cmdSnapshot(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || len(args[0]) > 0 && args[0][0] == '-' {
		return usagef("want save FILE, status FILE or restore FILE --data-dir DIR --peers LIST")
	}
	switch args[0] {
	case "save":
		return snapshotSave(ctx, e, args[1:])
	case "status":
		return snapshotStatus(e, args[1:])
	case "restore":
		return snapshotRestore(e, args[1:])
	}
	return usagef("unknown subcommand %q: want save, status or restore", args[0])
}

// snapshotSave streams a consistent snapshot from any node into FILE. It
// writes a temporary file, checks it decodes completely (checksums
// included), then renames it, so FILE is never a partial snapshot.
func snapshotSave(ctx context.Context, e *env, args []string) error {
	pos, err := e.parseCommand(newFlagSet("snapshot save", e.stderr), args, 1, 1, "FILE")
	if err != nil {
		return err
	}
	cl, err := e.client()
	if err != nil {
		return err
	}
	path := pos[0]
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".part-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	rev, n, err := cl.Snapshot(ctx, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	info, err := inspectSnapshot(tmp.Name())
	if err != nil {
		return fmt.Errorf("the received snapshot does not verify: %w", err)
	}
	if info.Revision() != rev {
		return fmt.Errorf("the received snapshot is at revision %d, the server announced %d", info.Revision(), rev)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "saved snapshot at revision %d (%d bytes, %d mailboxes) to %s\n", rev, n, info.Len(), path)
	return nil
}

// inspectSnapshot decodes a snapshot file into a fresh store.
func inspectSnapshot(path string) (*fsm.Store, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st := fsm.New(fsm.DefaultConfig())
	if err := st.Restore(f); err != nil {
		return nil, err
	}
	return st, nil
}

func snapshotStatus(e *env, args []string) error {
	pos, err := e.parseCommand(newFlagSet("snapshot status", e.stderr), args, 1, 1, "FILE")
	if err != nil {
		return err
	}
	st, err := inspectSnapshot(pos[0])
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	stats := st.Stats()
	var hist uint64
	if evs, err := st.EventsSince(0, 0); err == nil {
		hist = uint64(len(evs))
	} else {
		var ce *fsm.CompactedError
		if errors.As(err, &ce) {
			hist = ce.Current - ce.Compact
		}
	}
	peers := st.Peers()
	ids := slices.Sorted(maps.Keys(peers))
	if e.json() {
		type server struct {
			Server   string `json:"server"`
			Active   uint64 `json:"active"`
			Reserved uint64 `json:"reserved"`
		}
		out := struct {
			Revision      uint64            `json:"revision"`
			AppliedIndex  uint64            `json:"applied_index"`
			Mailboxes     int               `json:"mailboxes"`
			Active        uint64            `json:"active"`
			Reserved      uint64            `json:"reserved"`
			HistoryEvents uint64            `json:"history_events"`
			Peers         map[string]string `json:"peers"`
			Servers       []server          `json:"servers"`
		}{st.Revision(), st.AppliedIndex(), st.Len(), stats.Active, stats.Reserved, hist, peers, []server{}}
		for _, s := range stats.Servers {
			out.Servers = append(out.Servers, server{s.Server, s.Active, s.Reserved})
		}
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "%s\n", b)
		return err
	}
	t := newTable(e.stdout)
	fmt.Fprintf(t, "revision\t%d\n", st.Revision())
	fmt.Fprintf(t, "applied index\t%d\n", st.AppliedIndex())
	fmt.Fprintf(t, "mailboxes\t%d (%d active, %d reserved)\n", st.Len(), stats.Active, stats.Reserved)
	fmt.Fprintf(t, "history\t%d events\n", hist)
	if len(ids) == 0 {
		fmt.Fprintf(t, "peers\t-\n")
	}
	for i, id := range ids {
		label := ""
		if i == 0 {
			label = "peers"
		}
		fmt.Fprintf(t, "%s\t%s %s\n", label, id, peers[id])
	}
	for _, s := range stats.Servers {
		fmt.Fprintf(t, "server %s\t%d active, %d reserved\n", s.Server, s.Active, s.Reserved)
	}
	return t.Flush()
}

const restoreProcedure = `Restoring a cluster from a snapshot (every node starts from the same state):

  1. rookeryctl snapshot save backup.snap          (from the old cluster, any node)
  2. stop every rookeryd of the cluster to restore; give each node an EMPTY data dir
  3. on every node, with the SAME file and the SAME peer list:
       rookeryctl snapshot restore backup.snap --data-dir DIR \
         --peers n1=RAFT1/GRPC1,n2=RAFT2/GRPC2,n3=RAFT3/GRPC3
     This writes a raft snapshot holding the directory (revision kept, peer
     addresses replaced) and a configuration with those voters.
  4. start every node as usual (same -raft.peers): each resumes from the seeded
     state, elects a leader, and continues with revisions above the snapshot's.
  5. rookeryctl status   (every node at the snapshot's revision)
Watch clients resume from their revision or re-list; nothing else is needed.
`

func snapshotRestore(e *env, args []string) error {
	fs := newFlagSet("snapshot restore", e.stderr)
	dataDir := fs.String("data-dir", "", "empty data directory of the node to seed (required)")
	peers := fs.String("peers", "", "voters of the restored cluster: id=raft_addr/grpc_addr,... (required, same on every node)")
	fs.Usage = func() {
		fmt.Fprint(e.stderr, "usage: rookeryctl snapshot restore FILE --data-dir DIR --peers LIST\n\n"+restoreProcedure+"\nflags:\n")
		fs.PrintDefaults()
	}
	pos, err := e.parseCommand(fs, args, 0, 1, "FILE")
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fmt.Fprint(e.stdout, restoreProcedure)
		return usagef("")
	}
	if *dataDir == "" || *peers == "" {
		return usagef("--data-dir and --peers are required")
	}
	list, err := parsePeers(*peers)
	if err != nil {
		return usagef("--peers: %v", err)
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := seedDataDir(*dataDir, f, list)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "seeded %s: revision %d, %d mailboxes, raft index %d, voters %s\nstart the node with the same -raft.peers; it resumes from this state\n",
		*dataDir, res.revision, res.mailboxes, res.index, *peers)
	return nil
}
