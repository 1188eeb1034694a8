package jepsen

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	crashRoundsFlag = flag.Int("crash-rounds", 3, "kill -9 rounds per log store in TestCrashLoop (make crashloop: 100)")
	crashStoresFlag = flag.String("crash-stores", "bolt,wal", "log stores TestCrashLoop runs, comma separated")
	crashDirFlag    = flag.String("crash-dir", "", "keep the crash loop's node folders here (default: a temp dir, removed when it passes)")
)

// TestCrashLoop runs rounds of write load over gRPC and MUPDATE through
// three rookeryd processes, kill -9 of all of them at once, restart, and a
// check that every acknowledged write is on every node, for each log
// store. `make test` runs three rounds per store; `make crashloop` runs 100.
func TestCrashLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real clusters; skipped with -short")
	}
	bin := rookerydBinary(t)
	for _, store := range strings.Split(*crashStoresFlag, ",") {
		t.Run(store, func(t *testing.T) {
			root := *crashDirFlag
			keep := root != ""
			if root == "" {
				var err error
				if root, err = os.MkdirTemp("", "rookery-crashloop-"); err != nil {
					t.Fatal(err)
				}
			}
			cfg := DefaultCrashLoopConfig()
			cfg.Binary, cfg.LogStore, cfg.Rounds = bin, store, *crashRoundsFlag
			cfg.Dir = filepath.Join(root, store+"-"+time.Now().Format("150405"))
			cfg.Logger = slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
			res, err := RunCrashLoop(context.Background(), cfg)
			if err != nil {
				t.Fatalf("crash loop (%s): %v; folder %s", store, err, cfg.Dir)
			}
			t.Logf("CRASHLOOP %s", res)
			for _, p := range res.Problems {
				t.Logf("problem: %s", p)
			}
			if res.Rounds != cfg.Rounds || !res.OK() {
				t.Fatalf("crash loop failed: %s; folder kept: %s", res, cfg.Dir)
			}
			if res.Acked == 0 {
				t.Fatalf("no write was acknowledged: the loop tested nothing; folder %s", cfg.Dir)
			}
			if store == "bolt" && res.JournalReplays == 0 {
				t.Fatalf("no restart replayed raft.journal: the loop never killed a node holding appends there; folder %s", cfg.Dir)
			}
			if !keep {
				os.RemoveAll(root)
			}
		})
	}
}

// testLogWriter sends harness log lines to the test log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
