package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/config"
	"github.com/rookery/rookery/internal/freeport"
)

func TestRunRefusesBadConfigurationNamingTheSetting(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo.toml")
	os.WriteFile(typo, []byte("[raft]\nadress = \"127.0.0.1:1\"\n"), 0o600)
	base := []string{"-node.id", "n1", "-node.data_dir", dir, "-mupdate.listen", "", "-grpc.unauthenticated"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing node id", []string{"-node.data_dir", dir}, "node.id is required"},
		{"missing data dir", []string{"-node.id", "n1"}, "node.data_dir is required"},
		{"bad raft address", append(base, "-raft.address", "nowhere"), "raft.address"},
		{"bad peer entry", append(base, "-raft.peers", "n1=127.0.0.1:1"), "raft.peers"},
		{"tls cert without key", append(base, "-grpc.tls_cert", "x.pem"), "grpc.tls_cert and grpc.tls_key"},
		{"mupdate without users file", []string{"-node.id", "n1", "-node.data_dir", dir}, "auth.users_file"},
		{"no identities at all", []string{"-node.id", "n1", "-node.data_dir", dir, "-mupdate.listen", ""}, "no identities configured"},
		{"unknown key in file", []string{"-config", typo}, "raft.adress"},
		{"bad duration", append(base, "-raft.write_timeout", "soon"), "raft.write_timeout"},
		{"bad log level", append(base, "-log.level", "loud", "-raft.bootstrap", "-raft.insecure"), "log.level"},
		{"bad backend servers", append(base, "-mupdate.backend_servers", "be1"), "mupdate.backend_servers"},
		{"unknown log store", append(base, "-raft.log_store", "leveldb"), `raft.log_store "leveldb"`},
		{"unknown read mode", append(base, "-raft.read_mode", "fast"), `raft.read_mode "fast"`},
		{"raft with neither secret nor TLS", base, "raft connections would be unauthenticated: set raft.peer_secret_file"},
		{"require_tls without a certificate", append(base, "-mupdate.require_tls"), "mupdate.require_tls needs mupdate.tls_cert"},
		{"commit timeout below raft's minimum", append(base, "-raft.commit_timeout", "100us"), "raft.commit_timeout 100µs"},
		{"negative follower hold", append(base, "-raft.follower_hold", "-2ms"), "raft.follower_hold -2ms: want 0 or more"},
		{"negative reservation ttl", append(base, "-directory.reservation_ttl", "-1m"), "directory.reservation_ttl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(tc.args, strings.NewReader(""), io.Discard, &stderr)
			if code == 0 || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want non-zero and mention of %q", code, stderr.String(), tc.want)
			}
		})
	}
}

func testConfig(t *testing.T, dataDir string) Config {
	t.Helper()
	ports := freeport.T(t, 2)
	c := defaultConfig()
	c.Node.ID = "n1"
	c.Node.DataDir = dataDir
	c.Raft.Address = "127.0.0.1:" + strconv.Itoa(ports[0])
	c.Raft.Bootstrap = true
	c.GRPC.Listen = "127.0.0.1:" + strconv.Itoa(ports[1])
	c.Mupdate.Listen = ""
	c.GRPC.Unauthenticated = true
	secret := filepath.Join(t.TempDir(), "cluster-secret")
	if err := os.WriteFile(secret, []byte("rookeryd-test-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Raft.PeerSecretFile = secret
	return c
}

// A node with raft.insecure and neither secret nor TLS starts (the
// explicit opt-out); validate refuses the same config without it.
func TestRaftInsecureIsAnExplicitOptOut(t *testing.T) {
	c := testConfig(t, t.TempDir())
	c.Raft.PeerSecretFile = ""
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "raft.insecure=true") {
		t.Fatalf("validate without raft authentication: %v; want a refusal naming raft.insecure", err)
	}
	c.Raft.Insecure = true
	if err := c.validate(); err != nil {
		t.Fatalf("validate with raft.insecure: %v", err)
	}
}

func TestServeRefusesPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := testConfig(t, t.TempDir())
	c.GRPC.Listen = ln.Addr().String()
	err = serve(context.Background(), c, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err == nil || !strings.Contains(err.Error(), "grpc.listen") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("serve with the gRPC port taken: %v", err)
	}
}

func TestServeRefusesCorruptStore(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "raft.db"), bytes.Repeat([]byte("garbage!"), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	err := serve(context.Background(), testConfig(t, dir), slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err == nil || !strings.Contains(err.Error(), "raft.db") {
		t.Fatalf("serve over a corrupt raft.db: %v", err)
	}
}

// TestServeRestartKeepsDirectory writes through the gRPC API, stops the
// node with its context (as SIGTERM does), starts it again without
// bootstrap and finds the write: a restart never starts empty.
func TestServeRestartKeepsDirectory(t *testing.T) {
	c := testConfig(t, t.TempDir())
	startNode := func(c Config) (stop func()) { return serveInBackground(t, c) }
	stop := startNode(c)
	cl, err := client.Dial([]string{c.GRPC.Listen}, client.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rev uint64
	for rev == 0 {
		if rev, err = cl.Activate(ctx, "user.alice", "be1!default", "alice\tlrs\t"); err != nil {
			if ctx.Err() != nil {
				t.Fatalf("activate: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	stop()

	c.Raft.Bootstrap = false
	stop = startNode(c)
	defer stop()
	for {
		e, _, err := cl.Get(ctx, "user.alice", false)
		if err == nil {
			if e.Location != "be1!default" || e.ModRevision != rev {
				t.Fatalf("after restart user.alice = %+v, want be1!default at revision %d", e, rev)
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("get after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestREADMEExampleConfigIsValid keeps the configuration example in the
// README loadable: every key it shows exists and the result validates.
func TestREADMEExampleConfigIsValid(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "## Configuration")
	_, rest, ok2 := strings.Cut(rest, "```toml\n")
	block, _, ok3 := strings.Cut(rest, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README has no ```toml block under ## Configuration")
	}
	path := filepath.Join(t.TempDir(), "node.toml")
	if err := os.WriteFile(path, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	if err := config.Load("rookeryd", []string{"-config", path}, &cfg, io.Discard); err != nil {
		t.Fatalf("README example: %v", err)
	}
	if err := cfg.validate(); err != nil {
		t.Fatalf("README example does not validate: %v", err)
	}
	if cfg.Node.ID != "n1" || len(cfg.Raft.Peers) != 3 || cfg.Auth.UsersFile == "" {
		t.Fatalf("README example loaded as %+v", cfg)
	}
}

// TestDebugListenerServesStatusAndProfiles checks debug.listen: the JSON
// status names the node and the configured log store, and pprof answers.
func TestDebugListenerServesStatusAndProfiles(t *testing.T) {
	c := testConfig(t, t.TempDir())
	c.Raft.LogStore = cluster.LogStoreWAL
	c.Debug.Listen = "127.0.0.1:" + strconv.Itoa(freeport.T(t, 1)[0])
	defer serveInBackground(t, c)()
	get := func(path string) (*http.Response, error) { return http.Get("http://" + c.Debug.Listen + path) }
	deadline := time.Now().Add(10 * time.Second)
	var vars map[string]any
	for {
		resp, err := get("/debug/vars")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&vars)
			resp.Body.Close()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/debug/vars: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	status, _ := vars["status"].(map[string]any)
	if status["NodeID"] != "n1" || status["LogStore"] != cluster.LogStoreWAL {
		t.Fatalf("/debug/vars status does not name the node and its wal log store: %v", vars)
	}
	// A stranger on the raft port is refused and counted.
	if conn, err := net.Dial("tcp", c.Raft.Address); err == nil {
		_, _ = conn.Write([]byte("GET / HTTP/1.1\r\nHost: raft\r\n\r\nxxxxxxxxxxxxx"))
		_, _ = io.Copy(io.Discard, conn) // until the node closes it
		conn.Close()
	}
	for vars["raft_refused_connections"] != float64(1) {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("/debug/vars raft_refused_connections = %v after a stranger's connection, want 1", vars["raft_refused_connections"])
		}
		time.Sleep(50 * time.Millisecond)
		if resp, err := get("/debug/vars"); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&vars)
			resp.Body.Close()
		}
	}
	resp, err := get("/debug/pprof/goroutine?debug=1")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/debug/pprof/goroutine: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestVersionAndHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--version"}, strings.NewReader(""), &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "rookeryd ") || !strings.Contains(stdout.String(), "go1.") {
		t.Fatalf("--version: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"-h"}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	for _, want := range []string{"rookeryd hash-password", "--version", "-raft.address"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("-h output lacks %q:\n%s", want, stderr.String())
		}
	}
}

// raft.snapshot_commands reaches the node: its default, a value, and 0
// for "entries only" (cluster's zero would mean its default).
func TestRaftSnapshotCommandsSettingReachesTheNode(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"default", nil, cluster.DefaultConfig().SnapshotCommands},
		{"a value", []string{"-raft.snapshot_commands", "1000"}, 1000},
		{"0 is entries only", []string{"-raft.snapshot_commands", "0"}, -1},
		{"negative is entries only", []string{"-raft.snapshot_commands", "-7"}, -7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, t.TempDir())
			if err := config.Load("rookeryd", tc.args, &cfg, io.Discard); err != nil {
				t.Fatal(err)
			}
			cc, err := clusterConfig(cfg, cfg.GRPC.Listen, "", slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if cc.SnapshotCommands != tc.want {
				t.Fatalf("cluster SnapshotCommands %d, want %d", cc.SnapshotCommands, tc.want)
			}
		})
	}
}

// serveInBackground runs serve(c) until the returned stop is called, which
// waits for it and reports its error.
func serveInBackground(t *testing.T, c Config) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, c, slog.New(slog.DiscardHandler), prometheus.NewRegistry()) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
}
