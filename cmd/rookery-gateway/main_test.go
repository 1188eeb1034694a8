package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/gateway"
	"github.com/rookery/rookery/internal/freeport"
)

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunServesFromStaticDirectoryUntilCancelled(t *testing.T) {
	dir := t.TempDir()
	static := filepath.Join(dir, "dir.txt")
	if err := os.WriteFile(static, []byte("user.alice be1!default\nuser.moving be1!default RESERVED\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeport.Addr(t)
	cfgFile := filepath.Join(dir, "gw.toml")
	toml := "[gateway]\nhostname = \"cmd.test\"\n[gateway.limits]\nauth_failure_delay = \"10ms\"\n" +
		"[gateway.servers.be1]\nimap = \"" + freeport.Addr(t) + "\"\n"
	if err := os.WriteFile(cfgFile, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-config", cfgFile, "-gateway.listen.imap=" + addr, "-gateway.directory.static_file=" + static}, &logs)
	}()

	var c net.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err = net.Dial("tcp", addr); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("gateway never listened: %v\n%s", err, logs.String())
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	expect := func(prefix string) {
		t.Helper()
		l, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(l, prefix) {
			t.Fatalf("got %q %v, want %q", l, err, prefix)
		}
	}
	expect("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR ID] cmd.test")
	// Known to the static directory, RESERVED there, unknown: three answers.
	c.Write([]byte("a LOGIN moving pw\r\nb LOGIN ghost pw\r\nc LOGIN alice pw\r\n"))
	expect("a NO [UNAVAILABLE]")
	expect("b NO [AUTHENTICATIONFAILED]")
	expect("c NO [UNAVAILABLE]") // be1's address is closed
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d\n%s", code, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if !strings.Contains(logs.String(), "STATIC DIRECTORY loaded") {
		t.Fatalf("the static directory must be labelled in the log:\n%s", logs.String())
	}
}

func TestRunRejectsBadConfiguration(t *testing.T) {
	for _, args := range [][]string{
		{"-gateway.backend.auth=magic"},
		{"-no-such-flag"},
		{"-config", "/nonexistent/gw.toml"},
	} {
		var logs syncBuffer
		if code := run(context.Background(), args, &logs); code != 2 {
			t.Errorf("run(%v) = %d, want 2\n%s", args, code, logs.String())
		}
	}
}

// TestRunFollowsARookeryCluster runs the command against a real one-node
// Rookery cluster: a user activated in the cluster routes (to a backend
// that is down here, hence UNAVAILABLE), an unknown one fails like a bad
// password once the replica has caught up.
func TestRunFollowsARookeryCluster(t *testing.T) {
	cl := apitest.Start(t, apitest.Options{Nodes: 1})
	cl.WaitLeader()
	c, err := client.Dial(cl.Endpoints(), client.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := c.Activate(ctx, "user.alice", "be1!default", ""); err != nil {
		t.Fatal(err)
	}
	addr := freeport.Addr(t)
	var logs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{
			"-gateway.listen.imap=" + addr,
			"-gateway.directory.endpoints=" + strings.Join(cl.Endpoints(), ","),
			"-gateway.limits.auth_failure_delay=10ms",
		}, &logs)
	}()
	login := func(user string) string {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err.Error()
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(conn)
		r.ReadString('\n')
		conn.Write([]byte("a LOGIN " + user + " pw\r\n"))
		l, _ := r.ReadString('\n')
		return l
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.HasPrefix(login("ghost"), "a NO [AUTHENTICATIONFAILED]") {
		if time.Now().After(deadline) {
			t.Fatalf("replica never became ready\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l := login("alice"); !strings.HasPrefix(l, "a NO [UNAVAILABLE]") {
		t.Fatalf("alice: %q, want UNAVAILABLE (routed to be1, which has no address)", l)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit code %d\n%s", code, logs.String())
	}
}

// TestREADMEGatewayConfigLoads keeps the gateway example in the README
// loadable: every key it shows exists.
func TestREADMEGatewayConfigLoads(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "## Gateway")
	_, rest, ok2 := strings.Cut(rest, "```toml\n")
	block, _, ok3 := strings.Cut(rest, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README has no ```toml block under ## Gateway")
	}
	path := filepath.Join(t.TempDir(), "gateway.toml")
	if err := os.WriteFile(path, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.LoadConfig("rookery-gateway", []string{"-config", path}, io.Discard)
	if err != nil {
		t.Fatalf("README gateway example: %v", err)
	}
	if len(cfg.Dir.Endpoints) != 3 || cfg.Servers["be1"].IMAP == "" {
		t.Fatalf("README gateway example loaded as %+v", cfg)
	}
}
