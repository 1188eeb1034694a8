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
// children (`floor-follower`) are the followers. It runs until ctx ends.
func runFloor(ctx context.Context, log *slog.Logger, out io.Writer, args []string) error {
	cfg := floor.DefaultConfig()
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:3990", "MUPDATE listener (127.0.0.1 only)")
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
	if host, _, err := net.SplitHostPort(*listen); err != nil || host != "127.0.0.1" {
		return fmt.Errorf("--listen %q: must be 127.0.0.1:PORT", *listen)
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
		addr, err := startFloorFollower(ctx, cfg, i, *nice)
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
	ms, err := newFloorMupdate(leader, password, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ms.Shutdown(sctx)
	}()
	fmt.Fprintf(out, "floor: MUPDATE on %s, followers %s, in-flight %d, sync-first %v\n",
		ln.Addr(), strings.Join(cfg.Followers, " "), cfg.InFlight, cfg.SyncFirst)
	if err := ms.Serve(ln); !errors.Is(err, mupdatecompat.ErrServerClosed) {
		return err
	}
	return nil
}

// newFloorMupdate serves the leader with the MUPDATE front end rookeryd
// uses, user mupdate a writer with password.
func newFloorMupdate(leader *floor.Leader, password string, log *slog.Logger) (*mupdatecompat.Server, error) {
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
	mc.ServerName = "rookery-floor"
	dir := directory.NewService(leader, leader.Store())
	return mupdatecompat.NewServer(mc, dir, auth.New(ac, users), log.With("component", "mupdate"))
}

// startFloorFollower starts follower i as a child process in a session of
// its own and returns the address it listens on. The child ends with ctx.
func startFloorFollower(ctx context.Context, cfg floor.Config, i, nice int) (string, error) {
	dir := filepath.Join(cfg.Dir, fmt.Sprintf("follower%d", i))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, self, "floor-follower", "--dir", dir, "--autogroup-nice", strconv.Itoa(nice))
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
func runFloorFollower(ctx context.Context, log *slog.Logger, out io.Writer, args []string) error {
	fs := flag.NewFlagSet("floor-follower", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory for the log file")
	nice := fs.Int("autogroup-nice", 0, "nice of this process's autogroup")
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Fprintln(out, ln.Addr())
	return f.Serve(ctx, ln)
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
