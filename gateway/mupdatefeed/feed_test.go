package mupdatefeed

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/gateway"
	"github.com/rookery/rookery/gateway/internal/cyrustest"
)

// TestFeedFollowsTheRealCyrusMaster points the feed at a real Cyrus
// mupdate master and checks that the initial dump and the streamed
// changes (a create on be2, then its delete) reach the replica.
func TestFeedFollowsTheRealCyrusMaster(t *testing.T) {
	if why := cyrustest.Available(); why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("Cyrus unavailable in CI: " + why)
		}
		t.Skip("Cyrus unavailable: " + why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := cyrustest.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop() })
	if err := cyrustest.CreateUser(m.BE1, "alice"); err != nil {
		t.Fatal(err)
	}

	rep := gateway.NewReplica(gateway.DefaultReplicaConfig())
	cfg := DefaultConfig()
	cfg.Addr, cfg.User, cfg.Password = m.Master, "mupdate", "mupdatepw"
	cfg.NoopInterval = 500 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- New(cfg, rep).Run(fctx) }()

	waitFor(t, "initial dump", func() bool { return rep.Ready() })
	if e, ok := rep.Lookup("user.alice"); !ok || e.Location != "be1!default" || e.State != fsm.StateActive {
		t.Fatalf("user.alice = %+v %v", e, ok)
	}
	if err := cyrustest.CreateUser(m.BE2, "bob"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "streamed create", func() bool {
		e, ok := rep.Lookup("user.bob")
		return ok && e.Server() == "be2" && e.State == fsm.StateActive
	})
	if err := cyrustest.DeleteUser(m.BE2, "bob"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "streamed delete", func() bool { _, ok := rep.Lookup("user.bob"); return !ok })
	if st := rep.Stats(); st.Revision < 3 || st.LastContact.IsZero() {
		t.Fatalf("stats %+v", st)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rep.Ready() {
		t.Fatal("replica still ready after the feed stopped")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within 20s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
