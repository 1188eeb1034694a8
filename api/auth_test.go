package api

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/auth"
)

func TestMethodAccessClassifiesEveryRPC(t *testing.T) {
	cases := map[string]access{
		"/grpc.health.v1.Health/Check":                                   accessOpen,
		"/grpc.health.v1.Health/Watch":                                   accessOpen,
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      accessRead,
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": accessRead,
		"/rookery.v1.Directory/Get":                                      accessRead,
		"/rookery.v1.Directory/List":                                     accessRead,
		"/rookery.v1.Directory/Watch":                                    accessRead,
		"/rookery.v1.Directory/WaitRevision":                             accessRead,
		"/rookery.v1.Directory/Reserve":                                  accessWrite,
		"/rookery.v1.Directory/Activate":                                 accessWrite,
		"/rookery.v1.Directory/Deactivate":                               accessWrite,
		"/rookery.v1.Directory/Delete":                                   accessWrite,
		"/rookery.v1.Cluster/Status":                                     accessRead,
		"/rookery.v1.Cluster/Members":                                    accessRead,
		"/rookery.v1.Cluster/AddVoter":                                   accessAdmin,
		"/rookery.v1.Cluster/AddNonvoter":                                accessAdmin,
		"/rookery.v1.Cluster/RemoveServer":                               accessAdmin,
		"/rookery.v1.Cluster/TransferLeadership":                         accessAdmin,
		"/rookery.v1.Cluster/Snapshot":                                   accessAdmin,
		"/rookery.v1.Cluster/CheckConsistency":                           accessAdmin,
		"/rookery.v1.Peer/ConsistencyHash":                               accessPeer,
		"/rookery.v1.Peer/CheckConsistency":                              accessPeer,
		"/rookery.v1.Peer/Apply":                                         accessPeer,
		"/rookery.v1.Peer/ApplyStream":                                   accessPeer,
		"/rookery.v1.Peer/ReadIndex":                                     accessPeer,
		"/rookery.v1.Peer/Join":                                          accessPeer,
		"/rookery.v1.Directory/SomethingNew":                             accessAdmin,
		"/other.Service/Method":                                          accessAdmin,
	}
	for m, want := range cases {
		if got := methodAccess(m); got != want {
			t.Errorf("%s: access %d, want %d", m, got, want)
		}
	}
}

// roles is an Authenticator with fixed roles and passwords.
type roles map[string]auth.Identity

func (r roles) Authenticate(_ context.Context, _, user, pass string) (auth.Identity, error) {
	id, ok := r[user]
	if !ok || pass != "pw" {
		return auth.Identity{}, auth.ErrBadCredentials
	}
	if id.Role == auth.RoleNone {
		return auth.Identity{}, auth.ErrNoRole
	}
	return id, nil
}

func (r roles) Identity(name string) auth.Identity {
	id := r[name]
	id.Name = name
	return id
}

func TestAuthorizationMatrix(t *testing.T) {
	users := roles{
		"w":   {Name: "w", Role: auth.RoleWriter},
		"r":   {Name: "r", Role: auth.RoleReader},
		"be1": {Name: "be1", Role: auth.RoleWriter, Server: "be1"},
		"x":   {Name: "x", Role: auth.RoleNone},
	}
	newAuth := func(mod func(*Config)) *authenticator {
		cfg := DefaultConfig()
		cfg.Auth = users
		cfg.PeerSecret = "peer"
		if mod != nil {
			mod(&cfg)
		}
		a, err := newAuthenticator(cfg, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	strict := newAuth(nil)
	open := newAuth(func(c *Config) { c.OpenReads = true })
	noAuth := newAuth(func(c *Config) { c.Auth = nil; c.PeerSecret = "" })
	type tc struct {
		name   string
		a      *authenticator
		method string
		md     []string
		want   codes.Code
	}
	bearer := func(s string) []string { return []string{"authorization", "Bearer " + s} }
	cases := []tc{
		{"anonymous read, strict", strict, "/rookery.v1.Directory/Get", nil, codes.Unauthenticated},
		{"anonymous read, open reads", open, "/rookery.v1.Directory/Get", nil, codes.OK},
		{"anonymous write, open reads", open, "/rookery.v1.Directory/Reserve", nil, codes.Unauthenticated},
		{"anonymous health", strict, "/grpc.health.v1.Health/Check", nil, codes.OK},
		{"reader read", strict, "/rookery.v1.Directory/Watch", bearer("r:pw"), codes.OK},
		{"reader write", strict, "/rookery.v1.Directory/Delete", bearer("r:pw"), codes.PermissionDenied},
		{"reader admin", strict, "/rookery.v1.Cluster/Snapshot", bearer("r:pw"), codes.PermissionDenied},
		{"writer write", strict, "/rookery.v1.Directory/Delete", bearer("w:pw"), codes.OK},
		{"writer admin", strict, "/rookery.v1.Cluster/AddVoter", bearer("w:pw"), codes.OK},
		{"writer peer", strict, "/rookery.v1.Peer/Apply", bearer("w:pw"), codes.PermissionDenied},
		{"bound backend write", strict, "/rookery.v1.Directory/Reserve", bearer("be1:pw"), codes.OK},
		{"bound backend admin", strict, "/rookery.v1.Cluster/RemoveServer", bearer("be1:pw"), codes.PermissionDenied},
		{"no role", strict, "/rookery.v1.Directory/Get", bearer("x:pw"), codes.PermissionDenied},
		{"wrong password", open, "/rookery.v1.Directory/Get", bearer("w:nope"), codes.Unauthenticated},
		{"peer token", strict, "/rookery.v1.Peer/ReadIndex", []string{PeerTokenMetadata, peerToken("peer")}, codes.OK},
		{"peer token reads", strict, "/rookery.v1.Directory/Get", []string{PeerTokenMetadata, peerToken("peer")}, codes.OK},
		{"peer token writes", strict, "/rookery.v1.Directory/Reserve", []string{PeerTokenMetadata, peerToken("peer")}, codes.PermissionDenied},
		{"wrong peer secret", strict, "/rookery.v1.Peer/ReadIndex", []string{PeerTokenMetadata, "guess"}, codes.Unauthenticated},
		{"no auth configured", noAuth, "/rookery.v1.Cluster/RemoveServer", nil, codes.OK},
	}
	for _, c := range cases {
		ctx := context.Background()
		if c.md != nil {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(c.md...))
		}
		_, err := c.a.check(ctx, c.method)
		if status.Code(err) != c.want {
			t.Errorf("%s: %v, want %s", c.name, err, c.want)
		}
	}
}

func TestPageTokenRoundTripsAndRejectsGarbage(t *testing.T) {
	tok := pageToken{revision: 1 << 40, filter: 0xdeadbeef, after: "example.com!user.a\x1fb"}
	got, err := decodePageToken(encodePageToken(tok))
	if err != nil || got != tok {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range []string{"", "!!!", "AA", encodePageToken(pageToken{revision: 5})} {
		if _, err := decodePageToken(bad); err == nil {
			t.Errorf("decodePageToken(%q) accepted", bad)
		}
	}
}

func FuzzDecodePageToken(f *testing.F) {
	f.Add(encodePageToken(pageToken{revision: 7, filter: 1, after: "user.a"}))
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := decodePageToken(s)
		if err == nil && tok.after == "" {
			t.Fatalf("accepted a token without a position: %q", s)
		}
	})
}

// TestPeerCredentialsNeverCarryTheSecret: Peer RPCs present a token derived
// from the cluster secret, so plaintext gRPC never shows the secret that
// also keys the raft links; the derived token is what the server accepts.
func TestPeerCredentialsNeverCarryTheSecret(t *testing.T) {
	const secret = "cluster-secret-0123456789"
	md, err := PeerCredentials(secret, false).GetRequestMetadata(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tok := md[PeerTokenMetadata]
	if tok == "" || strings.Contains(tok, secret) {
		t.Fatalf("peer token %q: empty or carries the secret", tok)
	}
	a, err := newAuthenticator(Config{PeerSecret: secret}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		token string
		ok    bool
	}{{tok, true}, {secret, false}, {peerToken("another-secret-000000"), false}} {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(PeerTokenMetadata, tc.token))
		id, err := a.authenticate(ctx)
		if got := err == nil && id.Peer; got != tc.ok {
			t.Errorf("token %q: peer=%v err=%v, want accepted=%v", tc.token, id.Peer, err, tc.ok)
		}
	}
}
