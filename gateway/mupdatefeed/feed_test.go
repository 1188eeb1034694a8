package mupdatefeed

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/gateway"
	"github.com/rookery/rookery/internal/murder"
)

// TestFeedFollowsTheRealCyrusMaster points the feed at a real Cyrus
// mupdate master and checks that the initial dump and the streamed
// changes (a create on be2, then its delete) reach the replica.
func TestFeedFollowsTheRealCyrusMaster(t *testing.T) {
	m := murder.Start(t, murder.Options{Roles: []string{murder.RoleMaster, murder.RoleBE1, murder.RoleBE2}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := m.CreateUser(ctx, murder.RoleBE1, "alice"); err != nil {
		t.Fatal(err)
	}

	rep := gateway.NewReplica(gateway.DefaultReplicaConfig())
	cfg := DefaultConfig()
	cfg.Addr, cfg.User, cfg.Password = m.MasterAddr(), murder.MupdateUser, murder.MupdatePass
	cfg.NoopInterval = 500 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- New(cfg, rep).Run(fctx) }()

	waitFor(t, "initial dump", func() bool { return rep.Ready() })
	if e, ok := rep.Lookup("user.alice"); !ok || e.Location != "be1!default" || e.State != fsm.StateActive {
		t.Fatalf("user.alice = %+v %v", e, ok)
	}
	if err := m.CreateUser(ctx, murder.RoleBE2, "bob"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "streamed create", func() bool {
		e, ok := rep.Lookup("user.bob")
		return ok && e.Server() == "be2" && e.State == fsm.StateActive
	})
	if err := m.DeleteUser(ctx, murder.RoleBE2, "bob"); err != nil {
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
