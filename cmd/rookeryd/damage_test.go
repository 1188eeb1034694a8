package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/internal/freeport"
	"github.com/rookery/rookery/internal/testcluster"
)

// These tests run the real rookeryd binary on data dirs damaged the way a
// failing disk damages them, and check how the process ends: exit status 1
// and a message naming the damaged file and the way out, never a panic,
// a SIGBUS or a node that runs on damaged state (docs/integrity.md).

// daemon is one rookeryd process of a test.
type daemon struct {
	dataDir, grpc string
	args          []string
	stderr        bytes.Buffer
	cmd           *exec.Cmd
	done          chan error
}

func newDaemon(t *testing.T, bin, dataDir string, extra ...string) *daemon {
	ports := freeport.T(t, 2)
	d := &daemon{dataDir: dataDir, grpc: fmt.Sprintf("127.0.0.1:%d", ports[1])}
	// Daemons under one parent directory share the cluster secret, as
	// the members of one cluster do.
	secret := filepath.Join(filepath.Dir(dataDir), "cluster-secret")
	if err := os.WriteFile(secret, []byte("integrity-test-secret-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.args = append([]string{
		"-raft.peer_secret_file", secret,
		"-node.id", filepath.Base(dataDir), "-node.data_dir", dataDir,
		"-raft.address", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"-grpc.listen", d.grpc, "-grpc.unauthenticated", "-mupdate.listen", "",
		"-raft.heartbeat_timeout", "300ms", "-raft.election_timeout", "300ms", "-raft.leader_lease_timeout", "300ms",
	}, extra...)
	return d
}

func (d *daemon) start(t *testing.T, bin string, extra ...string) {
	t.Helper()
	d.stderr.Reset()
	d.cmd = exec.Command(bin, append(append([]string(nil), d.args...), extra...)...)
	d.cmd.Stderr = &d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.done = make(chan error, 1)
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() { d.stop(t) })
}

// stop sends SIGTERM (if still running) and waits for the exit.
func (d *daemon) stop(t *testing.T) {
	if d.cmd == nil || d.cmd.ProcessState != nil {
		return
	}
	_ = d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// wait waits for the process to exit on its own and returns its status.
func (d *daemon) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case err := <-d.done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return d.cmd.ProcessState.ExitCode()
	case <-time.After(limit):
		t.Fatalf("rookeryd still running after %v on damaged state; stderr:\n%s", limit, d.stderr.String())
		return 0
	}
}

// write activates mailboxes [from, to) through the node over workers
// concurrent calls, retrying each until it has a leader. Concurrent
// writes share log entries; one worker writes one entry per mailbox.
func (d *daemon) write(t *testing.T, from, to, workers int) {
	t.Helper()
	cl, err := client.Dial([]string{d.grpc}, client.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func(w int) {
			for i := from + w; i < to; i += workers {
				for {
					_, err := cl.Activate(ctx, fmt.Sprintf("user.u%05d", i), "be1!default", "anyone\tlrs\t")
					if err == nil {
						break
					}
					if ctx.Err() != nil {
						errs <- fmt.Errorf("activate %d: %w", i, err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			errs <- nil
		}(w)
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			t.Fatalf("%v\n%s", err, d.stderr.String())
		}
	}
}

// wantRefused checks a start that must fail: exit status 1, stderr naming
// each of want and the way out, and no crash.
func (d *daemon) wantRefused(t *testing.T, status int, want ...string) {
	t.Helper()
	out := d.stderr.String()
	for _, crash := range []string{"panic:", "fatal error:", "SIGBUS", "SIGSEGV", "goroutine "} {
		if strings.Contains(out, crash) {
			t.Fatalf("rookeryd crashed (%q) instead of refusing:\n%s", crash, out)
		}
	}
	if status != 1 {
		t.Fatalf("exit status %d, want 1; stderr:\n%s", status, out)
	}
	for _, w := range append(want, "wipe this node's data dir "+d.dataDir) {
		if !strings.Contains(out, w) {
			t.Fatalf("stderr does not name %q:\n%s", w, out)
		}
	}
	t.Logf("refused as wanted: %s", lastLine(out))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func flipAt(t *testing.T, path string, at, n int) {
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

// flipName flips the last byte of every copy of name in path and reports
// how many it found.
func flipName(t *testing.T, path, name string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hits := 0
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte(name))
		if i < 0 {
			break
		}
		b[off+i+len(name)-1] ^= 0x01
		off += i + len(name)
		hits++
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return hits
}

func snapshotDir(t *testing.T, dataDir string) string {
	t.Helper()
	snaps, _ := filepath.Glob(filepath.Join(dataDir, "snapshots", "*"))
	newest, idx := "", -1
	for _, s := range snaps {
		var term, index, ms int
		if _, err := fmt.Sscanf(filepath.Base(s), "%d-%d-%d", &term, &index, &ms); err == nil && index > idx {
			newest, idx = s, index
		}
	}
	if newest == "" {
		t.Fatalf("no snapshot in %s", dataDir)
	}
	return newest
}

// waitSnapshot waits until raft has written a snapshot in dataDir.
func waitSnapshot(t *testing.T, dataDir string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m, _ := filepath.Glob(filepath.Join(dataDir, "snapshots", "*", "meta.json")); len(m) > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no snapshot in %s after 20s", dataDir)
}

// TestRookerydOnDamagedState runs both process-level cases on one build
// of the binary.
func TestRookerydOnDamagedState(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the rookeryd binary")
	}
	bin := testcluster.Build(t, t.TempDir())
	t.Run("refuses a damaged data dir naming the file", func(t *testing.T) { refusesDamagedDataDirNamingTheFile(t, bin) })
	t.Run("exits when it cannot apply a committed entry", func(t *testing.T) { exitsWhenItCannotApplyACommittedEntry(t, bin) })
}

func refusesDamagedDataDirNamingTheFile(t *testing.T, bin string) {
	// Snapshot after 8 entries and keep 5 behind it, so the log no
	// longer holds what a snapshot covers. Group commit packs the 4
	// writers' 60 writes into as few as 15 entries.
	snapshots := []string{"-raft.snapshot_threshold", "8", "-raft.trailing_logs", "5", "-raft.snapshot_interval", "100ms"}
	tests := []struct {
		name   string
		extra  []string
		damage func(t *testing.T, dataDir string) []string // returns what stderr must name
	}{
		{"raft.db cut in half", nil, func(t *testing.T, dir string) []string {
			path := filepath.Join(dir, "raft.db")
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			os.Truncate(path, fi.Size()/2)
			return []string{path, "truncated"}
		}},
		{"bytes flipped in an entry in raft.db", nil, func(t *testing.T, dir string) []string {
			path := filepath.Join(dir, "raft.db")
			if flipName(t, path, "user.u00007") == 0 {
				t.Fatal("entry not found in raft.db")
			}
			return []string{path, "damaged at entry"}
		}},
		{"bytes flipped in an entry in a wal segment", []string{"-raft.log_store", "wal"}, func(t *testing.T, dir string) []string {
			segs, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
			if len(segs) == 0 || flipName(t, segs[0], "user.u00007") == 0 {
				t.Fatalf("entry not found in %v", segs)
			}
			return []string{segs[0], "damaged at entry"}
		}},
		{"one byte flipped in the newest snapshot's state.bin", snapshots, func(t *testing.T, dir string) []string {
			path := filepath.Join(snapshotDir(t, dir), "state.bin")
			flipAt(t, path, -40, 1)
			return []string{path, "snapshot"}
		}},
		{"newest snapshot's meta.json damaged", snapshots, func(t *testing.T, dir string) []string {
			path := filepath.Join(snapshotDir(t, dir), "meta.json")
			flipAt(t, path, 0, 1)
			return []string{path, "snapshot"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDaemon(t, bin, filepath.Join(t.TempDir(), "n1"), tt.extra...)
			d.start(t, bin, "-raft.bootstrap")
			d.write(t, 0, 60, 4)
			if len(tt.extra) > 0 && tt.extra[0] == snapshots[0] {
				waitSnapshot(t, d.dataDir)
			}
			d.stop(t)
			want := tt.damage(t, d.dataDir)
			d.start(t, bin)
			d.wantRefused(t, d.wait(t, 60*time.Second), want...)
		})
	}
}

// flipNameInPlace flips the last byte of every copy of name in path with
// in-place writes, as bit rot under a running process would (rewriting
// the file would truncate it under bbolt's mapping).
func flipNameInPlace(t *testing.T, path, name string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hits := 0
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte(name))
		if i < 0 {
			break
		}
		at := off + i + len(name) - 1
		if _, err := f.WriteAt([]byte{b[at] ^ 0x01}, int64(at)); err != nil {
			t.Fatal(err)
		}
		off += i + len(name)
		hits++
	}
	return hits
}

// A node that receives a committed entry it cannot apply stops: rookeryd
// exits 1 with a message naming the entry, its data dir and the way out,
// instead of skipping the entry and running diverged. Here the damage is
// on the leader's disk, under the running leader, in an entry old enough
// to be read back from raft.db when a new member catches up.
func exitsWhenItCannotApplyACommittedEntry(t *testing.T, bin string) {
	dir := t.TempDir()
	n1 := newDaemon(t, bin, filepath.Join(dir, "n1"))
	n1.start(t, bin, "-raft.bootstrap")
	// More entries than the leader keeps in memory (cluster.logCacheSize),
	// so the early ones are read from raft.db when n2 catches up.
	n1.write(t, 0, 700, 1)
	if flipNameInPlace(t, filepath.Join(n1.dataDir, "raft.db"), "user.u00007") == 0 {
		t.Fatal("entry not found in raft.db")
	}
	n2 := newDaemon(t, bin, filepath.Join(dir, "n2"))
	n2.start(t, bin, "-raft.join", n1.grpc)
	n2.wantRefused(t, n2.wait(t, 60*time.Second), "node stopped (data dir "+n2.dataDir+")", "cannot be applied", "checksum")
}
