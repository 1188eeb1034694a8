// Tests of the operator scripts, run against real binaries.
package scripts

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rookery/rookery/internal/freeport"
)

// runLocal is one run of run-local.sh in its own process group.
type runLocal struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// env is what every run of the script in one test shares.
type env struct {
	t    *testing.T
	bin  string
	data string
	vars []string
}

func newEnv(t *testing.T) *env {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "github.com/rookery/rookery/cmd/rookeryd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ports := freeport.T(t, 12)
	list := func(p []int) string {
		return fmt.Sprintf("%d %d %d", p[0], p[1], p[2])
	}
	e := &env{t: t, bin: bin, data: filepath.Join(t.TempDir(), "data")}
	e.vars = append(os.Environ(),
		"BIN="+bin, "DATA="+e.data,
		"RAFT_PORTS="+list(ports[0:3]), "GRPC_PORTS="+list(ports[3:6]),
		"MUPDATE_PORTS="+list(ports[6:9]), "DEBUG_PORTS="+list(ports[9:12]),
		"ROOKERY_ADMIN_PASSWORD=", "ROOKERY_READER_PASSWORD=", "ROOKERY_MUPDATE_PASSWORD=mupdatepw")
	return e
}

func (e *env) start(extra ...string) *runLocal {
	e.t.Helper()
	r := &runLocal{out: &lockedBuffer{}, done: make(chan error, 1)}
	r.cmd = exec.Command("./run-local.sh")
	r.cmd.Env = append(append([]string(nil), e.vars...), extra...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	e.t.Cleanup(func() { r.interrupt(e.t) })
	return r
}

// waitUp waits for the banner; it fails if the script exits first.
func (r *runLocal) waitUp(t *testing.T) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(r.out.String(), "Ctrl-C stops the node(s) this run started") {
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("run-local.sh exited (%v) before the cluster was up:\n%s", err, r.out.String())
		case <-deadline:
			t.Fatalf("run-local.sh: no banner within 60s:\n%s", r.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// exit waits for the script to end by itself and returns its exit code.
func (r *runLocal) exit(t *testing.T) int {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(30 * time.Second):
		t.Fatalf("run-local.sh did not exit:\n%s", r.out.String())
		return -1
	}
}

// interrupt is Ctrl-C: SIGINT to the script, which stops its nodes.
func (r *runLocal) interrupt(t *testing.T) {
	select {
	case err := <-r.done:
		r.done <- err
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-r.done:
		r.done <- err
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		t.Errorf("run-local.sh did not stop on SIGINT:\n%s", r.out.String())
	}
}

func (e *env) read(name string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.data, name))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func (e *env) size(name string) int64 {
	e.t.Helper()
	fi, err := os.Stat(filepath.Join(e.data, name))
	if err != nil {
		e.t.Fatal(err)
	}
	return fi.Size()
}

// nodePID finds the rookeryd serving node id (it holds the data dir LOCK).
func (e *env) nodePID(id string) int {
	e.t.Helper()
	lock := filepath.Join(e.data, id, "LOCK")
	fdinfo, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fdinfo {
		if target, err := os.Readlink(fd); err == nil && target == lock {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			return pid
		}
	}
	e.t.Fatalf("no process holds %s", lock)
	return 0
}

func (e *env) locked(id string) bool {
	return exec.Command("flock", "-n", filepath.Join(e.data, id, "LOCK"), "true").Run() != nil
}

// TestRunLocalRefusesARunningClusterAndRestartsAMissingNode is the
// operator's `make run` story: a second run over a running cluster fails
// and changes nothing (credentials, logs); after a node is killed, a run
// restarts just that node with the same credentials, and its Ctrl-C stops
// just that node.
func TestRunLocalRefusesARunningClusterAndRestartsAMissingNode(t *testing.T) {
	e := newEnv(t)
	first := e.start()
	first.waitUp(t)

	passwords := e.read("passwords")
	if fi, err := os.Stat(filepath.Join(e.data, "passwords")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("data/passwords: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	admin := lineValue(passwords, "admin")
	if admin == "" || lineValue(passwords, "mupdate") != "mupdatepw" {
		t.Fatalf("data/passwords lacks the generated admin or the given mupdate password:\n%s", passwords)
	}
	if !strings.Contains(first.out.String(), "mupdate (writer)") || !strings.Contains(first.out.String(), "/passwords") {
		t.Errorf("banner does not name the mupdate identity and the passwords file:\n%s", first.out.String())
	}
	if os.Geteuid() == 0 {
		for _, id := range []string{"n1", "n2", "n3"} {
			ag, err := os.ReadFile(fmt.Sprintf("/proc/%d/autogroup", e.nodePID(id)))
			if err != nil || !strings.HasSuffix(strings.TrimSpace(string(ag)), "nice -10") {
				t.Errorf("%s runs without CPU priority: /proc/PID/autogroup %q, %v; want its own autogroup at nice -10", id, ag, err)
			}
		}
	}
	users, logSize := e.read("users"), e.size("n1/rookeryd.log")

	second := e.start("ROOKERY_ADMIN_PASSWORD=another")
	if code := second.exit(t); code == 0 {
		t.Fatalf("second run over a running cluster exited 0:\n%s", second.out.String())
	}
	if e.read("users") != users || e.read("passwords") != passwords {
		t.Fatal("second run rewrote the credentials of the running cluster")
	}
	if e.size("n1/rookeryd.log") < logSize {
		t.Fatal("second run truncated a running node's log")
	}

	// kill -9 one node; make run restarts just that one.
	if err := syscall.Kill(e.nodePID("n2"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n2 down", func() bool { return !e.locked("n2") })
	third := e.start("ROOKERY_ADMIN_PASSWORD=another")
	third.waitUp(t)
	if out := third.out.String(); !strings.Contains(out, "this run started: n2 (") || !strings.Contains(out, "ignoring $ROOKERY_ADMIN_PASSWORD") {
		t.Errorf("third run should start only n2:\n%s", third.out.String())
	}
	if e.read("users") != users || e.read("passwords") != passwords {
		t.Fatal("restarting a node rewrote the credentials")
	}
	waitFor(t, "n2 running", func() bool { return e.locked("n2") })
	third.interrupt(t)
	if e.locked("n2") || !e.locked("n1") || !e.locked("n3") {
		t.Fatalf("Ctrl-C of the restart run must stop n2 only (n1 %v, n2 %v, n3 %v)", e.locked("n1"), e.locked("n2"), e.locked("n3"))
	}
	first.interrupt(t)
	if e.locked("n1") || e.locked("n3") {
		t.Fatal("Ctrl-C of the first run left nodes running")
	}

	// A plain restart keeps the generated passwords.
	fourth := e.start()
	fourth.waitUp(t)
	if got := lineValue(e.read("passwords"), "admin"); got != admin {
		t.Fatalf("restart changed the generated admin password %q to %q", admin, got)
	}

	// bolt appends go through raft.journal unless ROOKERY_BOLT_DIRECT=1;
	// the follower a commit does not need is held 2 ms on this one-host
	// cluster, and early append stays on unless ROOKERY_EARLY_APPEND=0.
	if _, err := os.Stat(filepath.Join(e.data, "n1", "raft.journal")); err != nil {
		t.Errorf("a running node has no raft.journal: %v", err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", e.nodePID("n1")))
	if err != nil || bytes.Contains(cmdline, []byte("-raft.persist_before_replicate")) || !bytes.Contains(cmdline, []byte("-raft.follower_hold\x002ms\x00")) {
		t.Errorf("n1's command line %q (%v): want -raft.follower_hold 2ms and early append on", bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), err)
	}
	// Each node gets its share of the host's cores unless GOMAXPROCS is set.
	share := max(1, runtime.NumCPU()/3)
	if v, ok := os.LookupEnv("GOMAXPROCS"); ok {
		share, _ = strconv.Atoi(v)
	}
	wantNodeEnv(t, e.nodePID("n1"), fmt.Sprintf("GOMAXPROCS=%d", share))
	fourth.interrupt(t)
	fifth := e.start("ROOKERY_BOLT_DIRECT=1", "ROOKERY_EARLY_APPEND=0", "GOMAXPROCS=7", "ROOKERYD_FLAGS=-raft.proposals_in_flight 3")
	fifth.waitUp(t)
	wantNodeEnv(t, e.nodePID("n1"), "GOMAXPROCS=7")
	cmdline, err = os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", e.nodePID("n1")))
	if err != nil || !bytes.Contains(cmdline, []byte("-raft.bolt_direct")) {
		t.Errorf("ROOKERY_BOLT_DIRECT=1: n1's command line %q (%v) lacks -raft.bolt_direct", bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), err)
	}
	if !bytes.Contains(cmdline, []byte("-raft.proposals_in_flight\x003\x00")) {
		t.Errorf("ROOKERYD_FLAGS: n1's command line %q lacks -raft.proposals_in_flight 3", bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
	}
	if !bytes.Contains(cmdline, []byte("-raft.persist_before_replicate")) {
		t.Errorf("ROOKERY_EARLY_APPEND=0: n1's command line %q leaves early append on", bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
	}
	if _, err := os.Stat(filepath.Join(e.data, "n1", "raft.journal")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("raft.journal with ROOKERY_BOLT_DIRECT=1: %v, want none", err)
	}
}

// wantNodeEnv checks that the process pid runs with the environment
// variable kv (NAME=value).
func wantNodeEnv(t *testing.T, pid int, kv string) {
	t.Helper()
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(environ), "\x00"), kv) {
		t.Errorf("node %d runs without %s", pid, kv)
	}
}

func lineValue(s, key string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			return v
		}
	}
	return ""
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
