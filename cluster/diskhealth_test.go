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

func alarmOf(n *Node, kind string) (Alarm, bool) {
	for _, a := range n.Alarms() {
		if a.Kind == kind {
			return a, true
		}
	}
	return Alarm{}, false
}

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
