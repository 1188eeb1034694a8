package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/internal/freeport"
)

func TestOpenRejectsBadConfig(t *testing.T) {
	good := func(t *testing.T) Config {
		cfg := testConfig(t, "n1")
		cfg.Bootstrap = true
		return cfg
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"empty node id", func(c *Config) { c.NodeID = "" }, "NodeID is empty"},
		{"empty data dir", func(c *Config) { c.DataDir = "" }, "DataDir is empty"},
		{"raft addr not host:port", func(c *Config) { c.RaftAddr = "nonsense" }, "RaftAddr"},
		{"raft addr unspecified", func(c *Config) { c.RaftAddr = "0.0.0.0:7001" }, "not an address peers can reach"},
		{"raft addr hostname", func(c *Config) { c.RaftAddr = "node1.example:7001" }, "not an IP address"},
		{"raft port out of range", func(c *Config) { c.RaftAddr = "127.0.0.1:70000" }, "bad port"},
		{"empty api addr", func(c *Config) { c.APIAddr = "" }, "APIAddr"},
		{"bootstrap and join", func(c *Config) { c.Join = []string{"127.0.0.1:9"} }, "mutually exclusive"},
		{"bad join address", func(c *Config) { c.Bootstrap = false; c.Join = []string{"127.0.0.1"} }, "Join address"},
		{"peers without self", func(c *Config) {
			c.Bootstrap = false
			c.Peers = []Peer{{ID: "other", RaftAddr: "127.0.0.1:7002", APIAddr: "127.0.0.1:8002"}}
		}, "does not include this node"},
		{"duplicate peer", func(c *Config) {
			c.Bootstrap = false
			p := Peer{ID: "n1", RaftAddr: c.RaftAddr, APIAddr: c.APIAddr}
			c.Peers = []Peer{p, p}
		}, "listed twice"},
		{"lease longer than heartbeat", func(c *Config) { c.LeaderLeaseTimeout = time.Second }, "LeaderLeaseTimeout"},
		{"negative write timeout", func(c *Config) { c.WriteTimeout = -time.Second }, "WriteTimeout"},
		{"unknown log store", func(c *Config) { c.LogStore = "leveldb" }, `LogStore "leveldb"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good(t)
			tt.mutate(&cfg)
			n, err := Open(context.Background(), cfg)
			if err == nil {
				_ = n.Close()
				t.Fatal("Open accepted a bad config")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestOpenRefusesCorruptRaftStore(t *testing.T) {
	// A real store with some history.
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	tn := startNode(t, cfg)
	(&testCluster{t: t, nodes: []*testNode{tn}}).waitLeader()
	for i := 0; i < 10; i++ {
		mustApply(t, tn.node, activate(i))
	}
	tn.stop()
	orig, err := os.ReadFile(filepath.Join(cfg.DataDir, raftDBName))
	if err != nil {
		t.Fatal(err)
	}

	garbage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + 3)
		}
		return b
	}
	tests := []struct {
		name    string
		corrupt func([]byte) []byte
	}{
		{"garbage file", func(b []byte) []byte { return garbage(len(b)) }},
		{"truncated to less than a page", func(b []byte) []byte { return b[:100] }},
		{"both meta pages overwritten", func(b []byte) []byte {
			c := append([]byte(nil), b...)
			copy(c[:8192], garbage(8192))
			return c
		}},
		{"not a database", func([]byte) []byte { return []byte("this is not a bolt file\n") }},
		{"data pages overwritten behind valid meta pages", func(b []byte) []byte {
			c := append([]byte(nil), b...)
			copy(c[8192:], garbage(len(c)-8192))
			return c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			c.DataDir = t.TempDir()
			c.RaftAddr = freeport.Addr(t)
			if err := os.WriteFile(filepath.Join(c.DataDir, raftDBName), tt.corrupt(orig), 0o600); err != nil {
				t.Fatal(err)
			}
			n, err := Open(context.Background(), c)
			if err == nil {
				_ = n.Close()
				t.Fatal("Open started on a corrupt raft store")
			}
			msg := err.Error()
			if !strings.Contains(msg, "corrupt") || !strings.Contains(msg, filepath.Join(c.DataDir, raftDBName)) {
				t.Fatalf("error does not name the problem and the file: %v", err)
			}
			t.Logf("%v", err)
		})
	}
}

func TestOpenRefusesRaftStoreInUse(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	startNode(t, cfg)
	second := cfg
	second.RaftAddr = freeport.Addr(t)
	n, err := Open(context.Background(), second)
	if err == nil {
		_ = n.Close()
		t.Fatal("two nodes opened the same data dir")
	}
	if !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("error: %v", err)
	}
}

func TestOpenRefusesCorruptSnapshot(t *testing.T) {
	cfg := testConfig(t, "n1")
	cfg.Bootstrap = true
	// Trim the log behind the snapshot: with the whole log still there a
	// damaged snapshot is recovered from (storagecheck_test.go).
	cfg.TrailingLogs = 2
	tn := startNode(t, cfg)
	(&testCluster{t: t, nodes: []*testNode{tn}}).waitLeader()
	for i := 0; i < 10; i++ {
		mustApply(t, tn.node, activate(i))
	}
	if err := tn.node.TakeSnapshot(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	tn.stop()
	states, err := filepath.Glob(filepath.Join(cfg.DataDir, snapshotsDir, "*", "state.bin"))
	if err != nil || len(states) != 1 {
		t.Fatalf("snapshot files %v, %v", states, err)
	}
	b, err := os.ReadFile(states[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(states[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := Open(context.Background(), cfg)
	if err == nil {
		_ = n.Close()
		t.Fatal("Open restored a corrupt snapshot")
	}
	if !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("error does not name the snapshot: %v", err)
	}
	t.Logf("%v", err)
}
