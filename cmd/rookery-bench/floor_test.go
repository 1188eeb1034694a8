package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
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

func TestFloorServesMupdateWritesHeldByItsFollowers(t *testing.T) {
	t.Setenv("ROOKERY_MUPDATE_PASSWORD", "floorpw")
	t.Setenv("GOMAXPROCS", strconv.Itoa(runtime.GOMAXPROCS(0)))
	addr, dir := freeport.Addr(t), t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- runFloor(ctx, slog.New(slog.DiscardHandler), &out, []string{"--listen", addr, "--dir", dir, "--autogroup-nice", "0"})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("floor: %v", err)
		}
	})

	cfg := mupdateclient.DefaultConfig()
	cfg.User, cfg.Password = "mupdate", "floorpw"
	var c *mupdateclient.Client
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if c, err = mupdateclient.Dial(ctx, addr, cfg); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("floor never served MUPDATE: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer c.Logout(ctx)
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
	wrong := cfg
	wrong.Password = "guess"
	if c2, err := mupdateclient.Dial(ctx, addr, wrong); err == nil {
		c2.Logout(ctx)
		t.Fatal("floor accepted a wrong password")
	}
}
