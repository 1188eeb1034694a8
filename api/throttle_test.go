package api

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/auth"
)

// TestPasswordGuessesOverGRPCAreThrottledPerAddress: gRPC password logins
// share the failed-login back-off with MUPDATE, keyed on the caller's
// address: guesses from one address throttle that address, not another.
func TestPasswordGuessesOverGRPCAreThrottledPerAddress(t *testing.T) {
	h, err := auth.HashPasswordCost("adminpw", 4)
	if err != nil {
		t.Fatal(err)
	}
	users, err := auth.NewUsers(map[string]string{"admin": h})
	if err != nil {
		t.Fatal(err)
	}
	acfg := auth.DefaultConfig()
	acfg.Writers = []string{"admin"}
	acfg.CacheTTL = 0 // every login is a real check
	acfg.Limits = auth.LimitsConfig{SourceFailures: 3, SourceWindow: time.Minute, MinBackoff: time.Minute, MaxBackoff: time.Minute}
	cfg := DefaultConfig()
	cfg.Auth = auth.New(acfg, users)
	cfg.PeerSecret = "peer"
	a, err := newAuthenticator(cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	call := func(ip, cred string) codes.Code {
		ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}})
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+cred))
		_, err := a.authenticate(ctx)
		return status.Code(err)
	}
	for i := range 3 {
		if got := call("192.0.2.1", "admin:guess"); got != codes.Unauthenticated {
			t.Fatalf("guess %d: %v", i, got)
		}
	}
	if got := call("192.0.2.1", "admin:adminpw"); got != codes.ResourceExhausted {
		t.Fatalf("right password from the throttled address: %v, want RESOURCE_EXHAUSTED", got)
	}
	if got := call("192.0.2.2", "admin:adminpw"); got != codes.OK {
		t.Fatalf("right password from another address: %v", got)
	}
}
