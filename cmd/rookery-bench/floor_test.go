package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rookery/rookery/internal/freeport"
	"github.com/rookery/rookery/internal/mupdateclient"
)

// TestMain lets runFloor start this test binary as its followers.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "floor-follower" {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		log := slog.New(slog.NewTextHandler(os.Stderr, nil))
		if err := runFloorFollower(ctx, log, os.Stdout, os.Args[2:]); err != nil {
			log.Error("floor-follower", "err", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startFloor runs runFloor with args (and --dir, its log to out) until
// the test ends; the MUPDATE password is floorpw.
func startFloor(t *testing.T, out io.Writer, args ...string) (ctx context.Context, dir string) {
	t.Helper()
	t.Setenv("ROOKERY_MUPDATE_PASSWORD", "floorpw")
	t.Setenv("GOMAXPROCS", strconv.Itoa(runtime.GOMAXPROCS(0)))
	dir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runFloor(ctx, slog.New(slog.DiscardHandler), out, append(args, "--dir", dir, "--autogroup-nice", "0"))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("floor: %v", err)
		}
	})
	return ctx, dir
}

func floorClientConfig() mupdateclient.Config {
	cfg := mupdateclient.DefaultConfig()
	cfg.User, cfg.Password = "mupdate", "floorpw"
	return cfg
}

// dialFloor logs in to the MUPDATE listener at addr, waiting for the
// floor to start it.
func dialFloor(ctx context.Context, t *testing.T, addr string) *mupdateclient.Client {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := mupdateclient.Dial(ctx, addr, floorClientConfig())
		if err == nil {
			t.Cleanup(func() { c.Logout(ctx) })
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("floor never served MUPDATE on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestFloorServesMupdateWritesHeldByItsFollowers(t *testing.T) {
	addr := freeport.Addr(t)
	ctx, dir := startFloor(t, io.Discard, "--listen", addr)
	c := dialFloor(ctx, t, addr)
	deadline := time.Now().Add(20 * time.Second)
	if err := c.Reserve(ctx, "user.floor", "be1!default"); err != nil {
		t.Fatal(err)
	}
	if err := c.Activate(ctx, "user.floor", "be1!default", "anyone lrs"); err != nil {
		t.Fatal(err)
	}
	e, ok, err := c.Find(ctx, "user.floor")
	if err != nil || !ok || e.Location != "be1!default" {
		t.Fatalf("FIND user.floor = %+v, %v, %v", e, ok, err)
	}
	// Each follower process wrote the writes to its own log: its first
	// record's sequence is set, where it started with zeros. (The leader
	// answered once one of them had synced; the other may trail.)
	for _, f := range []string{"follower1", "follower2"} {
		for {
			b, err := os.ReadFile(filepath.Join(dir, f, "floor.log"))
			if err != nil {
				t.Fatal(err)
			}
			if binary.BigEndian.Uint64(b) != 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s holds no record", f)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wrong := floorClientConfig()
	wrong.Password = "guess"
	if c2, err := mupdateclient.Dial(ctx, addr, wrong); err == nil {
		c2.Logout(ctx)
		t.Fatal("floor accepted a wrong password")
	}
}

func TestFloorFollowerServesMupdateWritesThroughTheLeader(t *testing.T) {
	addr, faddr := freeport.Addr(t), freeport.Addr(t)
	out := &lockedBuffer{}
	ctx, _ := startFloor(t, out, "--listen", addr, "--follower-listen", faddr)
	lc := dialFloor(ctx, t, addr)
	if want := "floor: MUPDATE on " + addr + ", follower 1 MUPDATE on " + faddr + ","; !strings.HasPrefix(out.String(), want) {
		t.Errorf("startup line %q, want it to begin %q", out.String(), want)
	}
	fc, err := mupdateclient.Dial(ctx, faddr, floorClientConfig())
	if err != nil {
		t.Fatalf("follower MUPDATE not up once the leader announced it: %v", err)
	}
	defer fc.Logout(ctx)
	if b := strings.Join(fc.Banner(), " "); !strings.Contains(b, `"rookery-floor-follower"`) {
		t.Errorf("follower banner %q", b)
	}
	if err := fc.Reserve(ctx, "user.via", "be1!default"); err != nil {
		t.Fatal(err)
	}
	if err := fc.Activate(ctx, "user.via", "be1!default", "anyone lrs"); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*mupdateclient.Client{"leader": lc, "follower": fc} {
		e, ok, err := c.Find(ctx, "user.via")
		if err != nil || !ok || e.Location != "be1!default" {
			t.Errorf("FIND user.via at the %s = %+v, %v, %v", name, e, ok, err)
		}
	}
	if err := fc.Deactivate(ctx, "user.never", "be1!default"); err == nil {
		t.Error("DEACTIVATE of a missing name through the follower succeeded")
	}
}

// lockedBuffer is the floor's stdout, written by its goroutine and read
// by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
