package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rookery/rookery/auth"
	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/internal/floor"
	"github.com/rookery/rookery/mupdatecompat"
)

// floorTokenEnv passes the link secret to the follower processes: in the
// environment, not on a command line others can read.
const floorTokenEnv = "ROOKERY_FLOOR_TOKEN"

// runFloor runs the floor (internal/floor) as three processes: this one
// is the leader and serves MUPDATE with Rookery's own front end; two
// children (`floor-follower`) are the followers. With --follower-listen,
// follower 1 serves MUPDATE too, forwarding to the leader: the floor of
// Rookery's follower path. It runs until ctx ends.
func runFloor(ctx context.Context, log *slog.Logger, out io.Writer, args []string) error {
	cfg := floor.DefaultConfig()
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:3990", "MUPDATE listener (127.0.0.1 only)")
	followerListen := fs.String("follower-listen", "", "MUPDATE listener of follower 1, which forwards to the leader (127.0.0.1 only; empty: none)")
	fs.StringVar(&cfg.Dir, "dir", "", "directory for the three nodes' log files (required)")
	fs.IntVar(&cfg.InFlight, "in-flight", cfg.InFlight, "batches replicating at once")
	fs.BoolVar(&cfg.SyncFirst, "sync-first", cfg.SyncFirst, "the leader syncs a batch before sending it (hashicorp/raft's order)")
	nice := fs.Int("autogroup-nice", defaultAutogroupNice(), "nice of each process's autogroup, as make run gives its nodes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Dir == "" {
		return errors.New("--dir is required")
	}
	if err := checkLoopback("--listen", *listen); err != nil {
		return err
	}
	if *followerListen != "" {
		// A fixed port: the startup line names it before follower 1 says
		// which port it bound.
		if err := checkLoopback("--follower-listen", *followerListen); err != nil || strings.HasSuffix(*followerListen, ":0") {
			return fmt.Errorf("--follower-listen %q: must be 127.0.0.1:PORT, PORT not 0", *followerListen)
		}
	}
	password := os.Getenv("ROOKERY_MUPDATE_PASSWORD")
	if password == "" {
		return errors.New("ROOKERY_MUPDATE_PASSWORD must be set (the password of user mupdate)")
	}
	setNodeShare(log, *nice)
	cfg.Token = make([]byte, floor.TokenSize)
	if _, err := rand.Read(cfg.Token); err != nil {
		return err
	}
	for i := 1; i <= 2; i++ {
		var mupdate string
		if i == 1 {
			mupdate = *followerListen
		}
		addr, err := startFloorFollower(ctx, cfg, i, *nice, mupdate)
		if err != nil {
			return err
		}
		cfg.Followers = append(cfg.Followers, addr)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "leader"), 0o700); err != nil {
		return err
	}
	cfg.Dir = filepath.Join(cfg.Dir, "leader")
	leader, err := floor.NewLeader(cfg, log)
	if err != nil {
		return err
	}
	defer leader.Close()
	ms, err := newFloorMupdate(leader, leader.Store(), "rookery-floor", password, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	// Follower 1 bound its MUPDATE listener before it printed its link
	// address, and its forward link is up since NewLeader dialled it.
	via := ""
	if *followerListen != "" {
		via = ", follower 1 MUPDATE on " + *followerListen
	}
	fmt.Fprintf(out, "floor: MUPDATE on %s%s, followers %s, in-flight %d, sync-first %v\n",
		ln.Addr(), via, strings.Join(cfg.Followers, " "), cfg.InFlight, cfg.SyncFirst)
	return serveFloorMupdate(ctx, ms, ln)
}

func checkLoopback(flagName, addr string) error {
	if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
		return fmt.Errorf("%s %q: must be 127.0.0.1:PORT", flagName, addr)
	}
	return nil
}

// serveFloorMupdate serves ms on ln until ctx ends.
func serveFloorMupdate(ctx context.Context, ms *mupdatecompat.Server, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ms.Shutdown(sctx)
	}()
	if err := ms.Serve(ln); !errors.Is(err, mupdatecompat.ErrServerClosed) {
		return err
	}
	return nil
}

// newFloorMupdate serves replica, whose applied state is store, with the
// MUPDATE front end rookeryd uses, user mupdate a writer with password.
// The leader and follower 1 both use it, so the two paths differ only in
// the replica under the front end.
func newFloorMupdate(replica directory.Replica, store directory.State, name, password string, log *slog.Logger) (*mupdatecompat.Server, error) {
	hash, err := auth.HashPassword(password)
	if err != nil {
		return nil, err
	}
	users, err := auth.NewUsers(map[string]string{"mupdate": hash})
	if err != nil {
		return nil, err
	}
	ac := auth.DefaultConfig()
	ac.Writers = []string{"mupdate"}
	mc := mupdatecompat.DefaultConfig()
	mc.ServerName = name
	dir := directory.NewService(replica, store)
	return mupdatecompat.NewServer(mc, dir, auth.New(ac, users), log.With("component", "mupdate"))
}

// startFloorFollower starts follower i as a child process in a session of
// its own and returns the address it listens on. With mupdate set, the
// child serves MUPDATE there too; it inherits ROOKERY_MUPDATE_PASSWORD.
// The child ends with ctx.
func startFloorFollower(ctx context.Context, cfg floor.Config, i, nice int, mupdate string) (string, error) {
	dir := filepath.Join(cfg.Dir, fmt.Sprintf("follower%d", i))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	args := []string{"floor-follower", "--dir", dir, "--autogroup-nice", strconv.Itoa(nice)}
	if mupdate != "" {
		args = append(args, "--mupdate-listen", mupdate)
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env = append(os.Environ(), floorTokenEnv+"="+hex.EncodeToString(cfg.Token))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go func() { _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("follower %d did not start: %w", i, err)
	}
	return strings.TrimSpace(line), nil
}

// runFloorFollower is one follower: it prints its address, then serves.
// With --mupdate-listen it serves MUPDATE too, through its forwarding
// replica; that listener is bound before the address is printed, so it
// is up once the leader announces it.
func runFloorFollower(ctx context.Context, log *slog.Logger, out io.Writer, args []string) error {
	fs := flag.NewFlagSet("floor-follower", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory for the log file")
	nice := fs.Int("autogroup-nice", 0, "nice of this process's autogroup")
	mupdate := fs.String("mupdate-listen", "", "MUPDATE listener forwarding to the leader (127.0.0.1 only; empty: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	token, err := hex.DecodeString(os.Getenv(floorTokenEnv))
	if err != nil || len(token) != floor.TokenSize {
		return fmt.Errorf("%s must hold %d hex-encoded bytes", floorTokenEnv, floor.TokenSize)
	}
	setNodeShare(log, *nice)
	f, err := floor.NewFollower(*dir, token, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	waitMupdate := func() error { return nil }
	if *mupdate != "" {
		if waitMupdate, err = startFollowerMupdate(ctx, cancel, f, *mupdate, log); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Fprintln(out, ln.Addr())
	err = f.Serve(ctx, ln)
	cancel()
	return errors.Join(err, waitMupdate())
}

// startFollowerMupdate binds addr and serves MUPDATE on it through f's
// forwarding replica until ctx ends; the function it returns waits for
// that and returns Serve's error. If serving fails, it ends the follower
// too (cancel): a floor whose follower path is gone must not go on
// measuring.
func startFollowerMupdate(ctx context.Context, cancel context.CancelFunc, f *floor.Follower, addr string, log *slog.Logger) (func() error, error) {
	if err := checkLoopback("--mupdate-listen", addr); err != nil {
		return nil, err
	}
	password := os.Getenv("ROOKERY_MUPDATE_PASSWORD")
	if password == "" {
		return nil, errors.New("ROOKERY_MUPDATE_PASSWORD must be set (the password of user mupdate)")
	}
	ms, err := newFloorMupdate(f.Replica(), f.Store(), "rookery-floor-follower", password, log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	served := make(chan error, 1)
	go func() {
		served <- serveFloorMupdate(ctx, ms, ln)
		cancel()
	}()
	return func() error { return <-served }, nil
}

// setNodeShare gives this process what make run gives each node: Go Ps
// for a third of the cores (unless GOMAXPROCS is set) and its autogroup's
// nice (scripts/run-local.sh).
func setNodeShare(log *slog.Logger, nice int) {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(max(1, runtime.NumCPU()/3))
	}
	if nice == 0 {
		return
	}
	if err := os.WriteFile("/proc/self/autogroup", []byte(strconv.Itoa(nice)), 0); err != nil {
		log.Warn("floor: could not set autogroup nice", "nice", nice, "err", err)
	}
}

func defaultAutogroupNice() int {
	if os.Geteuid() == 0 {
		return -10
	}
	return 0
}
