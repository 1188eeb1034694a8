package cluster

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/rookery/rookery/fsm"
)

// smallDisk mounts a tmpfs of size bytes for the test: a real filesystem
// that runs out of space. It needs root (the CI runs as root); elsewhere
// the test is skipped.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		runtime.GC() // closes what raft's failed snapshot sinks left open
		time.Sleep(10 * time.Millisecond)
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes dir/filler until the filesystem is full and returns its
// path; removing it frees the space again.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			break
		}
	}
	// The last partial block, byte by byte.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	return path
}

func alarmOf(n *Node, kind string) (Alarm, bool) { return findAlarm(n.alarms, kind) }

func TestFollowerOutOfDiskIsDegradedAndRecoversByItself(t *testing.T) {
	disk := smallDisk(t, "8m")
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.ConsistencyCheckInterval = -1
		if cfg.NodeID == "n3" {
			cfg.DataDir = filepath.Join(disk, "n3")
		}
	})
	fillAndSettle(t, c, 0, 100)
	var sick *testNode
	for _, tn := range c.running() {
		if tn.cfg.NodeID == "n3" {
			sick = tn
		}
	}
	if sick.node.IsLeader() {
		if err := sick.node.TransferLeadership(testCtx(t), ""); err != nil {
			t.Fatal(err)
		}
	}
	filler := fillDisk(t, disk)

	// Writes go on through the other two; n3 cannot store them.
	next := 100
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, ok := alarmOf(sick.node, AlarmDiskLog); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no disk alarm on n3 after filling its disk; alarms %+v", sick.node.Alarms())
		}
		var cmds []fsm.Command
		for i := 0; i < 200; i++ {
			cmds = append(cmds, activate(next))
			next++
		}
		mustApply(t, c.leader().node, cmds...)
	}
	st := sick.node.Status()
	if !strings.HasPrefix(st.Condition, "Degraded: raft log writes failing since ") || !strings.Contains(st.Condition, "no space left on device") {
		t.Fatalf("condition %q", st.Condition)
	}
	if a, _ := alarmOf(sick.node, AlarmDiskLog); a.BlocksReads || a.NeedsRestart {
		t.Fatalf("a full disk should neither block reads nor need a restart: %+v", a)
	}
	if st.State != raft.Follower.String() {
		t.Fatalf("raft state %q", st.State)
	}

	// Space comes back: the alarm clears and n3 catches up on its own.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	mustApply(t, c.leader().node, activate(next))
	last := c.leader().node.raft.LastIndex()
	if err := sick.node.WaitApplied(testCtx(t), last); err != nil {
		t.Fatalf("n3 did not catch up: %v", err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for len(sick.node.Alarms()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("alarms left after the disk recovered: %+v", sick.node.Alarms())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, found, err := sick.node.LinearizableGet(testCtx(t), mailboxName(next)); err != nil || !found {
		t.Fatalf("read on the recovered node: found=%v err=%v", found, err)
	}
}

func TestSnapshotWritesOnAFullDiskRaiseAndClearTheAlarm(t *testing.T) {
	disk := smallDisk(t, "1m")
	alarms := newAlarmSet(testLogger(t))
	d := newDiskHealth(alarms)
	fss, err := raft.NewFileSnapshotStore(disk, 1, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	st := &storage{snaps: fss, logs: raft.NewInmemStore(), stable: raft.NewInmemStore()}
	d.wrap(st, filepath.Join(disk, snapshotsDir))
	write := func(size int) error {
		sink, err := st.snaps.Create(raft.SnapshotVersionMax, 10, 1, raft.Configuration{}, 1, nil)
		if err != nil {
			return err
		}
		if _, err := sink.Write(make([]byte, size)); err != nil {
			_ = sink.Cancel()
			return err
		}
		return sink.Close()
	}
	if err := write(2 << 20); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("2 MiB snapshot on a 1 MiB disk: %v", err)
	}
	a, ok := alarms.blocking()
	if ok {
		t.Fatalf("a snapshot alarm blocks reads: %+v", a)
	}
	if as := alarms.list(); len(as) != 1 || as[0].Kind != AlarmDiskSnapshot || !strings.Contains(as[0].Message, "no space left on device") {
		t.Fatalf("alarms %+v", as)
	}
	// The failed snapshot's partial state file is gone, so its space is
	// free once raft's sink, which still holds the file open, is collected.
	deadline := time.Now().Add(10 * time.Second)
	for err := write(64 << 10); err != nil; err = write(64 << 10) {
		if time.Now().After(deadline) {
			t.Fatalf("small snapshot: %v", err)
		}
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	if left, _ := filepath.Glob(filepath.Join(disk, snapshotsDir, "*.tmp")); len(left) != 0 {
		t.Fatalf("temporary snapshot dirs left: %v", left)
	}
	if as := alarms.list(); len(as) != 0 {
		t.Fatalf("alarms after a good snapshot: %+v", as)
	}
}

func TestStuckWALAsksForARestart(t *testing.T) {
	disk := smallDisk(t, "6m")
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(disk, wal.WithMetaStore(meta), wal.WithSegmentSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close(); _ = meta.Close() })
	alarms := newAlarmSet(testLogger(t))
	st := &storage{logs: w, stable: w, snaps: raft.NewInmemSnapshotStore()}
	newDiskHealth(alarms).wrap(st, disk)
	filler := fillDisk(t, disk)

	// Appends fill the preallocated segment; the one that no longer fits
	// fails with ENOSPC, and from then on the WAL answers "segment is
	// sealed" however often raft retries.
	data := make([]byte, 32<<10)
	i := uint64(1)
	err = nil
	for try := 0; try < 200 && !errors.Is(err, wal.ErrSealed); try++ {
		if err = st.logs.StoreLogs([]*raft.Log{{Index: i, Term: 1, Data: data}}); err == nil {
			i++
		}
	}
	if !errors.Is(err, wal.ErrSealed) {
		t.Fatalf("appends on a full disk ended with %v, want %v", err, wal.ErrSealed)
	}
	a, ok := findAlarm(alarms, AlarmDiskLog)
	if !ok || !a.NeedsRestart || !strings.Contains(a.Message, "restart this node") {
		t.Fatalf("alarm %+v", a)
	}
	// Space comes back, but the WAL does not recover until reopened: the
	// alarm stays.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := st.logs.StoreLogs([]*raft.Log{{Index: i, Term: 1, Data: data}}); !errors.Is(err, wal.ErrSealed) {
		t.Fatalf("append after freeing space: %v", err)
	}
	if a, ok := findAlarm(alarms, AlarmDiskLog); !ok || !a.NeedsRestart {
		t.Fatalf("alarm after freeing space: %+v", a)
	}
}

func findAlarm(s *alarmSet, kind string) (Alarm, bool) {
	for _, a := range s.list() {
		if a.Kind == kind {
			return a, true
		}
	}
	return Alarm{}, false
}
