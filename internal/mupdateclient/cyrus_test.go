package mupdateclient_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rookery/rookery/internal/mupdateclient"
	"github.com/rookery/rookery/internal/murder"
)

// TestClientAgainstRealCyrusMaster drives the real Cyrus 3.6 mupdate master
// through every command the client has, checking Cyrus's answers.
func TestClientAgainstRealCyrusMaster(t *testing.T) {
	m := murder.Start(t, murder.Options{Roles: []string{murder.RoleMaster}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	addr := m.MasterAddr()
	prefix := fmt.Sprintf("user.mc%d", time.Now().UnixNano())

	dial := func(t *testing.T) *mupdateclient.Client {
		t.Helper()
		c, err := mupdateclient.Dial(ctx, addr, mupdateclient.DefaultConfig())
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	// Subtests run in parallel (Cyrus pauses 3 s after a failed login).
	t.Run("BannerOffersPlainAndLogoutSucceeds", func(t *testing.T) {
		t.Parallel()
		c := dial(t)
		if !slices.Contains(c.Mechanisms(), "PLAIN") {
			t.Fatalf("mechanisms %v lack PLAIN; banner %q", c.Mechanisms(), c.Banner())
		}
		if err := c.Logout(ctx); err != nil {
			t.Fatalf("LOGOUT: %v", err)
		}
	})

	t.Run("WrongPasswordGetsNO", func(t *testing.T) {
		t.Parallel()
		cfg := mupdateclient.DefaultConfig()
		cfg.Password = "wrong"
		_, err := mupdateclient.Dial(ctx, addr, cfg)
		if !mupdateclient.IsStatus(err, "NO") {
			t.Fatalf("Dial with wrong password: %v, want a NO", err)
		}
	})

	t.Run("ReserveActivateFindListDeactivateDelete", func(t *testing.T) {
		t.Parallel()
		c := dial(t)
		name, loc, acl := prefix+".a", "mcsrv!default", "alice\tlrswipkxtecdan\t"
		if err := c.Reserve(ctx, name, loc); err != nil {
			t.Fatalf("RESERVE: %v", err)
		}
		if e, ok, err := c.Find(ctx, name); err != nil || !ok || !e.Reserved || e.Location != loc {
			t.Fatalf("FIND reserved = %+v, %v, %v", e, ok, err)
		}
		if err := c.Reserve(ctx, name, "othersrv!default"); !mupdateclient.IsStatus(err, "NO") {
			t.Fatalf("RESERVE of a taken name at another server: %v, want NO", err)
		}
		if err := c.Activate(ctx, name, loc, acl); err != nil {
			t.Fatalf("ACTIVATE: %v", err)
		}
		want := mupdateclient.Entry{Name: name, Location: loc, ACL: acl}
		if e, ok, err := c.Find(ctx, name); err != nil || !ok || e != want {
			t.Fatalf("FIND active = %+v, %v, %v; want %+v", e, ok, err, want)
		}
		list, err := c.List(ctx, "mcsrv!")
		if err != nil || !slices.Contains(list, want) {
			t.Fatalf("LIST mcsrv! = %+v, %v; want it to hold %+v", list, err, want)
		}
		if list, err := c.List(ctx, "mcsrvX!"); err != nil || len(list) != 0 {
			t.Fatalf("LIST of another prefix = %+v, %v; want nothing", list, err)
		}
		if err := c.Deactivate(ctx, name, loc); err != nil {
			t.Fatalf("DEACTIVATE: %v", err)
		}
		if e, ok, err := c.Find(ctx, name); err != nil || !ok || !e.Reserved {
			t.Fatalf("FIND after DEACTIVATE = %+v, %v, %v; want reserved", e, ok, err)
		}
		if err := c.Delete(ctx, name); err != nil {
			t.Fatalf("DELETE: %v", err)
		}
		if e, ok, err := c.Find(ctx, name); err != nil || ok {
			t.Fatalf("FIND after DELETE = %+v, %v, %v; want none", e, ok, err)
		}
		if err := c.Noop(ctx); err != nil {
			t.Fatalf("NOOP: %v", err)
		}
	})

	t.Run("UpdateStreamsLaterActivate", func(t *testing.T) {
		t.Parallel()
		c := dial(t)
		name := prefix + ".streamed"
		before := prefix + ".before"
		if err := c.Activate(ctx, before, "mcsrv!default", "anyone\tlrs\t"); err != nil {
			t.Fatalf("ACTIVATE: %v", err)
		}
		s := dial(t)
		dump, err := s.Update(ctx)
		if err != nil {
			t.Fatalf("UPDATE: %v", err)
		}
		if !slices.ContainsFunc(dump, func(e mupdateclient.Entry) bool { return e.Name == before }) {
			t.Fatalf("UPDATE dump of %d entries lacks %s", len(dump), before)
		}
		if err := c.Noop(ctx); err != nil { // writes are illegal on s, fine on c
			t.Fatal(err)
		}
		if err := c.Activate(ctx, name, "mcsrv!default", "anyone\tlrs\t"); err != nil {
			t.Fatalf("ACTIVATE: %v", err)
		}
		// Cyrus drains its per-connection queue every few seconds or on
		// NOOP, so ask with NOOP like the frontend slave does.
		if _, err := s.SendNoop(ctx); err != nil {
			t.Fatalf("SendNoop: %v", err)
		}
		sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
		defer scancel()
		for {
			r, err := s.Next(sctx)
			if err != nil {
				t.Fatalf("stream never carried %s: %v", name, err)
			}
			if r.Tag == "U01" && r.Kind == "MAILBOX" && r.Name == name {
				break
			}
		}
	})

	t.Run("CanceledContextUnblocksRead", func(t *testing.T) {
		t.Parallel()
		s := dial(t)
		if _, err := s.Update(ctx); err != nil {
			t.Fatalf("UPDATE: %v", err)
		}
		short, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer scancel()
		start := time.Now()
		_, err := s.Next(short) // nothing is written: this would block
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Next on an idle stream = %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Next returned after %v", d)
		}
		if _, err := s.Next(ctx); err == nil {
			t.Fatal("connection reused after a broken read")
		}
	})
}
