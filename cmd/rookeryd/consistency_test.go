package main

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/auth"
	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/freeport"
	"github.com/rookery/rookery/internal/mupdateclient"
)

// A node found diverged answers every MUPDATE read with the temporary NO
// Cyrus retries (on another node, through its mupdate_server list), never
// with its own copy of the directory.
func TestDivergedNodeAnswersMupdateReadsWithATemporaryNO(t *testing.T) {
	c := apitest.Start(t, apitest.Options{Cluster: func(_ int, cfg *cluster.Config) { cfg.ConsistencyCheckInterval = -1 }})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.Nodes[c.WaitLeader()].Node()
	activate := func(name string) {
		t.Helper()
		if _, err := leader.Apply(ctx, []fsm.Command{{Op: fsm.OpActivate, Name: name, Location: "be1!default"}}); err != nil {
			t.Fatal(err)
		}
	}
	activate("user.a")
	bad := c.Nodes[c.Follower()].Node()
	bad.Store().Apply(bad.Store().AppliedIndex(), []fsm.Command{{Op: fsm.OpActivate, Name: "user.injected", Location: "evil!default"}})
	activate("user.b")
	if _, err := leader.CheckConsistency(ctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(bad.CheckReads(), cluster.ErrReadsRefused) {
		t.Fatalf("the diverged node was not flagged: %v", bad.CheckReads())
	}

	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users, err := auth.NewUsers(map[string]string{"mupdate": string(hash)})
	if err != nil {
		t.Fatal(err)
	}
	authn := auth.New(auth.Config{Writers: []string{"mupdate"}}, users)
	ms, err := newMupdateServer(defaultConfig(), directory.NewService(bad, bad.Store()), authn, apitest.Logger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := freeport.Addr(t)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = ms.Serve(ln) }()
	t.Cleanup(func() { _ = ms.Shutdown(context.Background()) })
	cfg := mupdateclient.DefaultConfig()
	cfg.User, cfg.Password = "mupdate", "pw"
	mc, err := mupdateclient.Dial(ctx, addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()

	temporaryNO := func(what string, err error) {
		t.Helper()
		var se *mupdateclient.StatusError
		if !errors.As(err, &se) || se.Status != "NO" || se.Text != "directory temporarily unavailable, try again" {
			t.Fatalf("%s on the diverged node: %v", what, err)
		}
	}
	_, _, err = mc.Find(ctx, "user.injected")
	temporaryNO("FIND", err)
	_, err = mc.List(ctx, "")
	temporaryNO("LIST", err)
}
