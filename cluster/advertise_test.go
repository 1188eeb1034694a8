package cluster

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRaftAdvertiseIsWhatPeersAreTold(t *testing.T) {
	tests := []struct {
		name      string
		advertise string
		want      string // RaftAddr() prefix, or error substring
		wantErr   bool
	}{
		{"advertise overrides the bound address", "127.0.0.1:45999", "127.0.0.1:45999", false},
		{"unspecified advertise IP is refused", "0.0.0.0:45999", "advertise address", true},
		{"advertise without a port is refused", "127.0.0.1", "advertise address", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.NodeID = "n1"
			cfg.RaftAddr = "127.0.0.1:0"
			cfg.RaftAdvertise = tc.advertise
			cfg.APIAddr = "127.0.0.1:1"
			cfg.DataDir = t.TempDir()
			cfg.RaftSecret = []byte(testRaftSecret)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			n, err := Open(ctx, cfg)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Open: %v, want error mentioning %q", err, tc.want)
				}
				if n != nil {
					n.Close()
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if got := n.RaftAddr(); got != tc.want {
				t.Fatalf("RaftAddr() = %q, want the advertised %q", got, tc.want)
			}
		})
	}
}
