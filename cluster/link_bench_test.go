package cluster

import (
	"fmt"
	"io"
	"testing"

	"github.com/hashicorp/raft"
)

// BenchmarkRaftLink measures what the raft link costs on the write path:
// the same writes as BenchmarkWrite (bolt, through the leader and through
// the followers) with the links sealed by the cluster secret (the default)
// and in plaintext (RaftInsecure), run back to back so machine load hits
// both alike.
//
//	go test ./cluster -run '^$' -bench BenchmarkRaftLink -benchtime 3000x
func BenchmarkRaftLink(b *testing.B) {
	for _, via := range []string{"leader", "follower"} {
		for _, writers := range []int{1, 16} {
			for _, link := range []string{"sealed", "plain"} {
				b.Run(fmt.Sprintf("via=%s/writers=%d/link=%s", via, writers, link), func(b *testing.B) {
					c := newTestCluster(b, 3, func(cfg *Config) {
						defaultTiming(cfg)
						if link == "plain" {
							cfg.RaftSecret, cfg.RaftInsecure = nil, true
						}
					})
					targets := []*Node{c.leader().node}
					if via == "follower" {
						targets = nil
						for _, tn := range c.followers() {
							targets = append(targets, tn.node)
						}
					}
					reportLatencies(b, runWriters(b, targets, writers, b.N, nil))
				})
			}
		}
	}
}

// BenchmarkSealedConn is the sealing cost alone: bytes through a sealed
// loopback connection in raft-sized writes.
func BenchmarkSealedConn(b *testing.B) {
	for _, size := range []int{512, 64 << 10} {
		b.Run(fmt.Sprintf("write=%dB", size), func(b *testing.B) {
			server, err := newSecretStreamLayer("127.0.0.1:0", nil, []byte(testRaftSecret), testLogger(b))
			if err != nil {
				b.Fatal(err)
			}
			defer server.Close()
			go func() {
				c, err := server.Accept()
				if err == nil {
					_, _ = io.Copy(io.Discard, c)
				}
			}()
			c, err := server.Dial(raft.ServerAddress(server.Addr().String()), transportTimeout)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRaftHandshake is the cost of opening one authenticated link
// (raft keeps up to five per peer open and reuses them).
func BenchmarkRaftHandshake(b *testing.B) {
	server, err := newSecretStreamLayer("127.0.0.1:0", nil, []byte(testRaftSecret), testLogger(b))
	if err != nil {
		b.Fatal(err)
	}
	defer server.Close()
	go func() {
		for {
			c, err := server.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for i := 0; i < b.N; i++ {
		c, err := server.Dial(raft.ServerAddress(server.Addr().String()), transportTimeout)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
