package cluster

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// entryOf is a command entry of k activations numbered from first.
func entryOf(index uint64, first, k int) *raft.Log {
	cmds := make([]fsm.Command, k)
	for i := range cmds {
		cmds[i] = activate(first + i)
	}
	return cmdLog(index, fsm.EncodeCommands(cmds))
}

// failingSink is a snapshot sink whose disk fails.
type failingSink struct{ raft.SnapshotSink }

func (failingSink) Write([]byte) (int, error) { return 0, errors.New("disk full") }
func (failingSink) Cancel() error             { return nil }

func TestSnapshotIsDueOnceCommandsSinceTheLastSnapshotReachTheThreshold(t *testing.T) {
	// Entries of 4 commands against a threshold of 10.
	persist := func(t *testing.T, a *fsmAdapter, sink raft.SnapshotSink) error {
		snap, err := a.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		return snap.Persist(sink)
	}
	goodSink := func(t *testing.T) raft.SnapshotSink {
		sink, err := raft.NewInmemSnapshotStore().Create(raft.SnapshotVersionMax, 1, 1, raft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		return sink
	}
	tests := []struct {
		name        string
		every       uint64
		before      int // entries applied before between
		between     func(t *testing.T, a *fsmAdapter)
		after       int // entries applied after between
		wantDue     bool
		wantPending uint64
	}{
		{name: "two entries, 8 commands: not due", every: 10, before: 2, wantPending: 8},
		{name: "three entries, 12 commands: due", every: 10, before: 3, wantDue: true, wantPending: 12},
		{name: "threshold 0 (entries only): never due", every: 0, before: 5, wantPending: 20},
		{name: "a stored snapshot covers what was applied before it", every: 10, before: 3, after: 2, wantPending: 8,
			between: func(t *testing.T, a *fsmAdapter) {
				if err := persist(t, a, goodSink(t)); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "a snapshot that failed to store covers nothing", every: 10, before: 2, after: 1, wantDue: true, wantPending: 12,
			between: func(t *testing.T, a *fsmAdapter) {
				if err := persist(t, a, failingSink{}); err == nil {
					t.Fatal("persist to a failing disk succeeded")
				}
			}},
		{name: "a restore leaves nothing to replay", every: 10, before: 3, after: 1, wantPending: 4,
			between: func(t *testing.T, a *fsmAdapter) {
				src := newFSMAdapter(fsm.New(fsm.Config{}), slog.New(slog.DiscardHandler))
				src.ApplyBatch([]*raft.Log{entryOf(1, 0, 1)})
				snap, _ := src.Snapshot()
				pr, pw := io.Pipe()
				go func() { _ = pw.CloseWithError(snap.(*fsmSnapshot).write(pw)) }()
				if err := a.Restore(pr); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := testAdapter(t)
			a.commands = newCommandCount(tt.every)
			index := uint64(0)
			apply := func(entries int) {
				for range entries {
					index++
					a.ApplyBatch([]*raft.Log{entryOf(index, int(index)*4, 4)})
				}
			}
			apply(tt.before)
			if tt.between != nil {
				tt.between(t, a)
				drain(a.commands.due)
			}
			apply(tt.after)
			if got := a.commands.pending(); got != tt.wantPending {
				t.Errorf("pending %d commands, want %d", got, tt.wantPending)
			}
			if got := drain(a.commands.due); got != tt.wantDue {
				t.Errorf("due %v, want %v", got, tt.wantDue)
			}
		})
	}
}

// drain reports whether a signal was waiting, and takes it.
func drain(due <-chan struct{}) bool {
	select {
	case <-due:
		return true
	default:
		return false
	}
}

// A bulk import packs thousands of commands into an entry, far fewer
// entries than raft's SnapshotThreshold: every node still snapshots once
// it applied SnapshotCommands, and a restarted node restores that snapshot
// instead of replaying the import.
func TestBulkImportSnapshotsEveryNodeAndARestartRestoresInsteadOfReplaying(t *testing.T) {
	if testing.Short() {
		t.Skip("imports 50k mailboxes into three nodes")
	}
	const (
		every     = 20_000
		mailboxes = 50_000
		perEntry  = 4096
	)
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.SnapshotCommands = every })
	l := c.leader()
	bulkLoad(t, l.node, 0, mailboxes, perEntry)
	if last, threshold := l.node.raft.LastIndex(), l.cfg.SnapshotThreshold; last >= threshold {
		t.Fatalf("the import took %d entries, reaching raft's own threshold %d", last, threshold)
	}
	for _, tn := range c.running() {
		waitSnapshotted(t, tn.node, every)
	}

	f := c.followers()[0]
	f.stop()
	re := startNode(t, f.cfg)
	c.nodes = append(c.nodes, re)
	if err := re.node.LinearizableRead(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := re.node.Store().View().Len(); got != mailboxes {
		t.Fatalf("restarted node has %d mailboxes, want %d", got, mailboxes)
	}
	if replayed := re.node.fsm.commands.total(); replayed >= every {
		t.Fatalf("restarted node replayed %d commands from its log, want fewer than %d (the rest from its snapshot)", replayed, every)
	}
}

// waitSnapshotted waits until n has stored a snapshot and has fewer than
// every commands applied after its last one.
func waitSnapshotted(t *testing.T, n *Node, every uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		snap, pending := n.Status().LastSnapshot, n.fsm.commands.pending()
		if snap.Index > 0 && pending < every {
			t.Logf("%s: snapshot at index %d, %d commands after it", n.ID(), snap.Index, pending)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no snapshot covering the import within 30s (last snapshot %+v, %d commands after it)", n.ID(), snap, pending)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gatedSnapshots holds the first snapshot's first write to its sink until
// open is closed, and closes writing when it gets there.
type gatedSnapshots struct {
	raft.SnapshotStore
	writing, open chan struct{}
	once          sync.Once
}

func (g *gatedSnapshots) Create(v raft.SnapshotVersion, index, term uint64, c raft.Configuration, ci uint64, t raft.Transport) (raft.SnapshotSink, error) {
	sink, err := g.SnapshotStore.Create(v, index, term, c, ci, t)
	if err != nil {
		return nil, err
	}
	first := false
	g.once.Do(func() { first = true })
	if first {
		return &gatedSink{SnapshotSink: sink, g: g}, nil
	}
	return sink, nil
}

type gatedSink struct {
	raft.SnapshotSink
	g       *gatedSnapshots
	started bool
}

func (s *gatedSink) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		close(s.g.writing)
		<-s.g.open
	}
	return s.SnapshotSink.Write(p)
}

// A snapshot's compaction gives up when more changes than the history
// holds are applied while it is written, as during a bulk import; the node
// then snapshots once more when applies pause, and that one compacts.
func TestCompactionGivenUpDuringAnImportIsDoneOnceAppliesPause(t *testing.T) {
	const mailboxes = 50_000 // a snapshot over 1 MB: written while fsm's WriteTo runs
	snaps := &gatedSnapshots{SnapshotStore: raft.NewInmemSnapshotStore(), writing: make(chan struct{}), open: make(chan struct{})}
	cfg := testConfig(t, "solo")
	cfg.Bootstrap = true
	cfg.SnapshotCommands = mailboxes
	cfg.FSM.HistorySize = 10
	cfg.Stores = &Stores{Logs: raft.NewInmemStore(), Stable: raft.NewInmemStore(), Snapshots: snaps}
	tn := startNode(t, cfg)
	(&testCluster{t: t, nodes: []*testNode{tn}}).waitLeader()

	bulkLoad(t, tn.node, 0, mailboxes, 4096)
	select {
	case <-snaps.writing:
	case <-time.After(30 * time.Second):
		t.Fatal("no snapshot after the import reached SnapshotCommands")
	}
	bulkLoad(t, tn.node, mailboxes, mailboxes+100, 100) // more than the history holds
	close(snaps.open)
	deadline := time.Now().Add(30 * time.Second)
	for tn.node.Status().LastSnapshot.Index == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the held snapshot was not stored")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !tn.node.Store().CompactionDue() {
		t.Fatal("the snapshot written while applies went on compacted the store anyway")
	}
	for tn.node.Store().CompactionDue() {
		if time.Now().After(deadline) {
			t.Fatalf("store still due a compaction 30s after the import (%d commands after the last snapshot)", tn.node.fsm.commands.pending())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := tn.node.Store().Len(); got != mailboxes+100 {
		t.Fatalf("%d mailboxes after compaction, want %d", got, mailboxes+100)
	}
}
