package testcluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rookery/rookery/auth"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Spec is one node's identity, addresses and files, laid out the same way
// by this package's Cluster and by the Jepsen harness.
type Spec struct {
	ID, RaftAddr, GRPCAddr, MupdateAddr, DataDir, LogPath string
}

// Args are the flags every harness starts a node with: identity,
// addresses, data dir, the cluster secret and the users file.
func (s Spec) Args(secretFile, usersFile string, admins []string) []string {
	return []string{
		"-node.id", s.ID, "-node.data_dir", s.DataDir,
		"-raft.address", s.RaftAddr, "-raft.peer_secret_file", secretFile,
		"-grpc.listen", s.GRPCAddr,
		"-mupdate.listen", s.MupdateAddr, "-mupdate.servername", "rookery-" + s.ID,
		"-auth.users_file", usersFile, "-auth.admins", strings.Join(admins, ","),
	}
}

// WriteUsers writes a users file: identity → password, hashed at bcrypt's
// lowest cost so logins in tests stay cheap.
func WriteUsers(path string, users map[string]string) error {
	var b strings.Builder
	for name, pw := range users {
		hash, err := auth.HashPasswordCost(pw, 4)
		if err != nil {
			return fmt.Errorf("testcluster: hash password: %w", err)
		}
		fmt.Fprintf(&b, "%s:%s\n", name, hash)
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// Process is one started node process, its output appended to a log.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// StartProcess runs bin with args, appending its output to logPath after
// a line marking the start. The process is killed if the thread that
// started it exits, so nodes die with the harness even when it is killed.
func StartProcess(bin string, args []string, logPath string) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "\n==== starting at %s: %s ====\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("testcluster: start %s: %w", bin, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

// Pid is the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Running reports whether the process is alive (stopped with SIGSTOP
// counts); a nil Process never ran.
func (p *Process) Running() bool {
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the running process.
func (p *Process) Signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("testcluster: signal pid %d: %w", p.Pid(), err)
	}
	return nil
}

// Stop sends sig, unless the process already exited, and waits up to wait
// for the exit.
func (p *Process) Stop(sig syscall.Signal, wait time.Duration) error {
	if !p.Running() {
		return nil
	}
	if err := p.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(wait):
		return fmt.Errorf("testcluster: pid %d did not exit within %v of %v", p.Pid(), wait, sig)
	}
}

// AwaitLeader polls statuses until every node asked names the same leader
// and that leader says it leads, and returns the leader's index in ids.
// statuses has one entry per node, nil for a node not asked (stopped,
// paused, removed), or fails when an asked node did not answer.
func AwaitLeader(ctx context.Context, ids []string, statuses func(context.Context) ([]*rookeryv1.StatusResponse, error)) (int, error) {
	for {
		sts, err := statuses(ctx)
		if err == nil {
			leader := ""
			for i, st := range sts {
				if st != nil && (st.GetLeaderId() == "" || (leader != "" && st.GetLeaderId() != leader)) {
					err = fmt.Errorf("%s sees leader %q", ids[i], st.GetLeaderId())
					break
				}
				leader = cmp.Or(st.GetLeaderId(), leader)
			}
			if i := slices.Index(ids, leader); err == nil && i >= 0 && sts[i].GetState() == "Leader" {
				return i, nil
			} else if err == nil {
				err = fmt.Errorf("leader %q is not a running node that leads", leader)
			}
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("testcluster: no agreed leader: %w (last: %w)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
