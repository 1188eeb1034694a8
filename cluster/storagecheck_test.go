package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Each case damages a stopped node's files the way a failing disk or an
// interrupted copy would, then starts the node again. The start must end
// in an error naming the damaged file and the way out, or in recovery with
// every mailbox present; never in a panic, a SIGBUS, or a node that runs
// with entries missing.

// stoppedNode runs a one-node cluster on a fresh data dir, activates
// mailboxes [0, before), takes a snapshot if snapshot is set, activates
// [before, total) and stops the node. trailing is Config.TrailingLogs:
// small values trim the log behind the snapshot.
func stoppedNode(t *testing.T, logStore string, before, total int, snapshot bool, trailing uint64) Config {
	t.Helper()
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	cfg.LogStore = logStore
	cfg.TrailingLogs = trailing
	cfg.SnapshotThreshold = 1 << 30 // only the snapshot taken here
	cfg.SnapshotInterval = time.Hour
	tn := startNode(t, cfg)
	(&testCluster{t: t, nodes: []*testNode{tn}}).waitLeader()
	for i := 0; i < before; i++ {
		mustApply(t, tn.node, activate(i))
	}
	if snapshot {
		if err := tn.node.TakeSnapshot(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	for i := before; i < total; i++ {
		mustApply(t, tn.node, activate(i))
	}
	tn.stop()
	cfg.Bootstrap = false
	cfg.RaftAddr = freshAddr(t)
	return cfg
}

func freshAddr(t *testing.T) string { return testConfig(t, "x").RaftAddr }

// reopenRefused starts a node on cfg and wants the start refused with an
// error naming each of want.
func reopenRefused(t *testing.T, cfg Config, want ...string) {
	t.Helper()
	tn, err := tryStartNode(t, cfg)
	if err == nil {
		n := tn.node.Store().View().Len()
		tn.stop()
		t.Fatalf("node started on damaged state (%d mailboxes)", n)
	}
	for _, w := range append(want, "refusing to start", "wipe this node's data dir "+cfg.DataDir) {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error does not name %q:\n%v", w, err)
		}
	}
	t.Logf("refused: %v", err)
}

// reopenRecovered starts a node on cfg and wants every mailbox of [0,
// total) back.
func reopenRecovered(t *testing.T, cfg Config, total int) {
	t.Helper()
	tn := startNode(t, cfg)
	c := &testCluster{t: t, nodes: []*testNode{tn}}
	c.waitLeader()
	if err := tn.node.LinearizableRead(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < total; i++ {
		if _, ok := tn.node.Store().Get(mailboxName(i)); !ok {
			t.Fatalf("recovered node lacks %s (has %d mailboxes, want %d)", mailboxName(i), tn.node.Store().View().Len(), total)
		}
	}
	mustApply(t, tn.node, activate(total))
}

func flip(t *testing.T, path string, at, n int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if at < 0 {
		at += len(b)
	}
	for i := at; i < at+n && i < len(b); i++ {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Cut in half, bbolt's meta page points past the end of the file; mapping
// it and reading there was a SIGBUS that killed the process.
func TestOpenRefusesRaftDBCutInHalf(t *testing.T) {
	cfg := stoppedNode(t, LogStoreBolt, 400, 400, false, 10240)
	path := filepath.Join(cfg.DataDir, raftDBName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	reopenRefused(t, cfg, path, "truncated")
}

// A byte flipped inside an entry's data: before checksums the entry
// decoded as a different command or was skipped, and the node ran with
// mailboxes missing or renamed. bbolt and raft-wal trust the bytes of
// committed entries; the entry's CRC-32C catches it.
func TestOpenRefusesADamagedLogEntryNamingTheFileAndIndex(t *testing.T) {
	for _, store := range []string{LogStoreBolt, LogStoreWAL} {
		t.Run(store, func(t *testing.T) {
			cfg := stoppedNode(t, store, 20, 20, false, 10240)
			files := []string{filepath.Join(cfg.DataDir, raftDBName)}
			if store == LogStoreWAL {
				files, _ = filepath.Glob(filepath.Join(cfg.DataDir, walDirName, "*.wal"))
			}
			// Flip a byte of every copy of one mailbox name (bbolt's
			// freed pages keep older copies of a leaf).
			name := []byte(mailboxName(7))
			hits, damaged := 0, ""
			for _, path := range files {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				for off := 0; ; {
					i := bytes.Index(b[off:], name)
					if i < 0 {
						break
					}
					b[off+i+len(name)-1] ^= 0x01
					off += i + len(name)
					hits++
					damaged = path
				}
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if hits == 0 {
				t.Fatalf("%s not found in %v", name, files)
			}
			reopenRefused(t, cfg, damaged, "damaged at entry", "checksum")
		})
	}
}

// A damaged snapshot is never applied. Raft used to fall back to an older
// snapshot (or none) whatever the log held, and then panic with "log not
// found". Now: if the log still holds every entry the damaged snapshot
// covers, the node moves it aside and recovers from the log; otherwise it
// refuses to start, naming the snapshot.
func TestDamagedSnapshotIsRefusedOrRecoveredFromTheLog(t *testing.T) {
	damages := []struct {
		name   string
		damage func(t *testing.T, snapDir string)
		names  string // file the error names
	}{
		{"one byte flipped in state.bin", func(t *testing.T, d string) {
			flip(t, filepath.Join(d, "state.bin"), -100, 1)
		}, "state.bin"},
		{"adapter header flipped in state.bin", func(t *testing.T, d string) {
			flip(t, filepath.Join(d, "state.bin"), 10, 1)
		}, "state.bin"},
		{"state.bin truncated", func(t *testing.T, d string) {
			p := filepath.Join(d, "state.bin")
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()-7)
		}, "state.bin"},
		{"meta.json damaged", func(t *testing.T, d string) {
			flip(t, filepath.Join(d, "meta.json"), 0, 1)
		}, "meta.json"},
	}
	for _, dm := range damages {
		for _, trimmed := range []bool{true, false} {
			name := dm.name + "/log covers the snapshot"
			if trimmed {
				name = dm.name + "/log trimmed behind the snapshot"
			}
			t.Run(name, func(t *testing.T) {
				trailing := uint64(10240)
				if trimmed {
					trailing = 5
				}
				cfg := stoppedNode(t, LogStoreBolt, 30, 40, true, trailing)
				snaps, err := filepath.Glob(filepath.Join(cfg.DataDir, snapshotsDir, "*"))
				if err != nil || len(snaps) != 1 {
					t.Fatalf("snapshots %v, %v", snaps, err)
				}
				dm.damage(t, snaps[0])
				if trimmed {
					reopenRefused(t, cfg, filepath.Join(snaps[0], dm.names), "damaged")
					return
				}
				reopenRecovered(t, cfg, 40)
				if _, err := os.Stat(filepath.Join(cfg.DataDir, damagedDir, filepath.Base(snaps[0]))); err != nil {
					t.Fatalf("damaged snapshot not moved aside: %v", err)
				}
			})
		}
	}
}

// An older snapshot behind an intact newer one is fine even if its log
// entries are gone, and is not even read at start (raft restores the
// newest; at ten million mailboxes each check reads ~280 MB): damaged, it
// stays where it is. With the newer one damaged, the older one plus the
// log must cover everything, or the start is refused.
func TestDamagedNewestSnapshotFallsBackOnlyWhenTheLogCovers(t *testing.T) {
	for _, damageNewest := range []bool{true, false} {
		t.Run(fmt.Sprintf("newest damaged=%v", damageNewest), func(t *testing.T) {
			cfg := testConfig(t, "n1")
			cfg.Bootstrap = true
			cfg.TrailingLogs = 5
			cfg.SnapshotThreshold = 1 << 30
			cfg.SnapshotInterval = time.Hour
			tn := startNode(t, cfg)
			(&testCluster{t: t, nodes: []*testNode{tn}}).waitLeader()
			for i := 0; i < 10; i++ {
				mustApply(t, tn.node, activate(i))
			}
			if err := tn.node.TakeSnapshot(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			for i := 10; i < 20; i++ {
				mustApply(t, tn.node, activate(i))
			}
			if err := tn.node.TakeSnapshot(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			tn.stop()
			snaps, _ := filepath.Glob(filepath.Join(cfg.DataDir, snapshotsDir, "*"))
			if len(snaps) != 2 {
				t.Fatalf("snapshots %v, want 2", snaps)
			}
			// Names are "<term>-<index>-<ms>": the later one has the higher index.
			newest, older, idx := "", "", -1
			for _, s := range snaps {
				var term, index, ms int
				if _, err := fmt.Sscanf(filepath.Base(s), "%d-%d-%d", &term, &index, &ms); err == nil && index > idx {
					newest, idx = s, index
				}
			}
			for _, s := range snaps {
				if s != newest {
					older = s
				}
			}
			cfg.Bootstrap = false
			cfg.RaftAddr = freshAddr(t)
			if damageNewest {
				flip(t, filepath.Join(newest, "state.bin"), -50, 1)
				reopenRefused(t, cfg, filepath.Join(newest, "state.bin"), "newest intact snapshot at index")
				return
			}
			flip(t, filepath.Join(older, "state.bin"), -50, 1)
			reopenRecovered(t, cfg, 20)
			if _, err := os.Stat(older); err != nil {
				t.Fatalf("the older snapshot was checked and moved: %v", err)
			}
		})
	}
}

// Interrupted snapshots leave "<id>.tmp" directories that raft never
// removes (13 MB each at a million mailboxes); a start removes them.
func TestOpenRemovesInterruptedSnapshotTempDirs(t *testing.T) {
	cfg := stoppedNode(t, LogStoreBolt, 5, 5, true, 10240)
	tmp := filepath.Join(cfg.DataDir, snapshotsDir, "3-9-1700000000000.tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "state.bin"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &lockedWriter{buf: new(bytes.Buffer)}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tn := startNode(t, cfg)
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("interrupted snapshot %s still there (%v)", tmp, err)
	}
	if !strings.Contains(logs.String(), "removed interrupted snapshot") || !strings.Contains(logs.String(), tmp) {
		t.Fatalf("no log line naming %s:\n%s", tmp, logs.String())
	}
	// The real snapshot is untouched.
	if tn.node.Status().LastSnapshot.Index == 0 {
		t.Fatal("the node lost its snapshot")
	}
}

// lockedWriter collects log output from the node's goroutines.
type lockedWriter struct {
	mu  sync.Mutex
	buf *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// The case: bytes flipped at random in raft.db's data pages. Before
// checksums, the node started with entries missing or renamed. Each of 30
// seeded damages must now refuse the start naming raft.db, or (damage in
// unused pages) start with every mailbox; the test process must survive.
func TestRandomByteFlipsInRaftDBAreRefusedOrHarmless(t *testing.T) {
	const mailboxes = 300
	base := stoppedNode(t, LogStoreBolt, mailboxes, mailboxes, false, 10240)
	orig, err := os.ReadFile(filepath.Join(base.DataDir, raftDBName))
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for seed := int64(1); seed <= 30; seed++ {
		cfg := base
		cfg.DataDir = t.TempDir()
		cfg.RaftAddr = freshAddr(t)
		path := filepath.Join(cfg.DataDir, raftDBName)
		b := append([]byte(nil), orig...)
		r := rand.New(rand.NewSource(seed))
		for i := 0; i < 20; i++ {
			b[8192+r.Intn(len(b)-8192)] ^= byte(1 + r.Intn(255)) // past the meta pages
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		tn, err := tryStartNode(t, cfg)
		if err != nil {
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "refusing to start") {
				t.Fatalf("seed %d: refused without naming %s: %v", seed, path, err)
			}
			refused++
			continue
		}
		(&testCluster{t: t, nodes: []*testNode{tn}}).waitLeader()
		if err := tn.node.LinearizableRead(testCtx(t)); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		for i := 0; i < mailboxes; i++ {
			if _, ok := tn.node.Store().Get(mailboxName(i)); !ok {
				t.Fatalf("seed %d: node started on damaged raft.db without %s", seed, mailboxName(i))
			}
		}
		tn.stop()
	}
	t.Logf("%d of 30 damaged copies refused, the rest started with all %d mailboxes", refused, mailboxes)
}

// raft-wal stops reading its tail segment at the first frame header that
// does not parse and takes the rest for an unfinished write: 20 bytes
// flipped in the middle of the segment used to drop every later entry
// without a word. A torn last batch, on the other hand, is what raft-wal
// recovers from, and still starts.
func TestWALTailDamageIsRefusedButATornLastWriteIsNot(t *testing.T) {
	t.Run("20 bytes flipped mid-segment", func(t *testing.T) {
		cfg := stoppedNode(t, LogStoreWAL, 200, 200, false, 10240)
		seg := walTailSegment(filepath.Join(cfg.DataDir, walDirName))
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		used := len(bytes.TrimRight(b, "\x00"))
		// Hit frame headers: flip the 20 bytes at the first entry
		// frame header past the middle of the used part.
		stop, _ := walFrames(b, used)
		if stop < used {
			t.Fatalf("segment already stops parsing at %d of %d", stop, used)
		}
		at := frameHeaderNear(b, used/2)
		flip(t, seg, at, 20)
		reopenRefused(t, cfg, seg, "complete committed batch follows")
	})
	t.Run("torn last batch", func(t *testing.T) {
		cfg := stoppedNode(t, LogStoreWAL, 50, 50, false, 10240)
		seg := walTailSegment(filepath.Join(cfg.DataDir, walDirName))
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		used := len(bytes.TrimRight(b, "\x00"))
		// Zero the last commit frame, as a crash before it reached the
		// disk leaves it: raft-wal drops that one batch.
		for i := used - walFrameHeaderLen; i < used; i++ {
			b[i] = 0
		}
		if err := os.WriteFile(seg, b, 0o600); err != nil {
			t.Fatal(err)
		}
		reopenRecovered(t, cfg, 49)
	})
}

// frameHeaderNear returns the offset of the first frame header at or after
// off in a segment that parses cleanly.
func frameHeaderNear(b []byte, off int) int {
	at := walFileHeaderLen
	for at < off {
		switch b[at] {
		case walFrameEntry, walFrameIndex:
			n := int(binary.LittleEndian.Uint32(b[at+4:]))
			at += walFrameHeaderLen + n + (walFrameHeaderLen-n%walFrameHeaderLen)%walFrameHeaderLen
		default:
			at += walFrameHeaderLen
		}
	}
	return at
}
