package api_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/api"
	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

func withAuth(ctx context.Context, scheme, cred string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", scheme+" "+cred)
}

func TestSecurityAuthenticatesAndAuthorizesEveryKindOfCaller(t *testing.T) {
	c, p := apitest.StartSecure(t, apitest.Options{})
	follower := c.Nodes[c.Follower()].APIAddr
	tlsConn := func(cn string) *grpc.ClientConn {
		return conn(t, follower, grpc.WithTransportCredentials(credentials.NewTLS(p.ClientTLS(t, cn))))
	}
	anon := tlsConn("")
	ctx := testCtx(t)
	bearer := func(cred string) context.Context { return withAuth(ctx, "Bearer", cred) }
	reserve := func(cc *grpc.ClientConn, ctx context.Context, name, loc string) error {
		_, err := rookeryv1.NewDirectoryClient(cc).Reserve(ctx, &rookeryv1.ReserveRequest{Name: name, Location: loc})
		return err
	}
	get := func(cc *grpc.ClientConn, ctx context.Context, name string) (*rookeryv1.GetResponse, error) {
		return rookeryv1.NewDirectoryClient(cc).Get(ctx, &rookeryv1.GetRequest{Name: name})
	}
	cases := []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"anonymous read", func() error { _, err := get(anon, ctx, "user.x"); return err }, codes.Unauthenticated},
		{"anonymous write", func() error { return reserve(anon, ctx, "user.x", "imap-be01!default") }, codes.Unauthenticated},
		{"wrong password", func() error { _, err := get(anon, bearer("admin:wrong"), "user.x"); return err }, codes.Unauthenticated},
		{"unknown token", func() error { _, err := get(anon, bearer("no-such-token"), "user.x"); return err }, codes.Unauthenticated},
		{"unsupported scheme", func() error { _, err := get(anon, withAuth(ctx, "Digest", "x"), "user.x"); return err }, codes.Unauthenticated},
		{"user without a role reads", func() error { _, err := get(anon, bearer(apitest.NoRoleCred), "user.x"); return err }, codes.PermissionDenied},
		{"reader reads", func() error { _, err := get(anon, bearer(apitest.ReaderCred), "user.x"); return err }, codes.NotFound},
		{"reader writes", func() error { return reserve(anon, bearer(apitest.ReaderCred), "user.x", "imap-be01!default") }, codes.PermissionDenied},
		{"admin writes through a follower", func() error { return reserve(anon, bearer(apitest.AdminCred), "user.admin", "imap-be01!default") }, codes.OK},
		{"basic credentials", func() error {
			return reserve(anon, withAuth(ctx, "Basic", base64.StdEncoding.EncodeToString([]byte("admin:adminpw"))), "user.basic", "imap-be01!default")
		}, codes.OK},
		{"token writes", func() error { return reserve(anon, bearer(apitest.Token), "user.token", "imap-be01!default") }, codes.OK},
		{"client certificate of a writer", func() error { return reserve(tlsConn(apitest.AdminCertCN), ctx, "user.cert", "imap-be01!default") }, codes.OK},
		{"client certificate of a reader writes", func() error { return reserve(tlsConn(apitest.ReaderCertCN), ctx, "user.x", "imap-be01!default") }, codes.PermissionDenied},
		{"client certificate of a reader reads", func() error { _, err := get(tlsConn(apitest.ReaderCertCN), ctx, "user.cert"); return err }, codes.OK},
		{"backend writes its own server", func() error { return reserve(anon, bearer(apitest.BackendCred), "user.be1", "imap-be01!default") }, codes.OK},
		{"backend writes another server", func() error { return reserve(anon, bearer(apitest.BackendCred), "user.be1b", "imap-be02!default") }, codes.PermissionDenied},
		{"reader writes a batch", func() error {
			_, err := rookeryv1.NewDirectoryClient(anon).Batch(bearer(apitest.ReaderCred), &rookeryv1.BatchRequest{Commands: []*rookeryv1.BatchCommand{
				{Op: rookeryv1.Operation_OPERATION_RESERVE, Name: "user.x", Location: "imap-be01!default"}}})
			return err
		}, codes.PermissionDenied},
		{"reader releases", func() error {
			_, err := rookeryv1.NewDirectoryClient(anon).Release(bearer(apitest.ReaderCred), &rookeryv1.ReleaseRequest{Name: "user.x"})
			return err
		}, codes.PermissionDenied},
		{"reader lists reservations", func() error {
			_, err := rookeryv1.NewDirectoryClient(anon).ListReservations(bearer(apitest.ReaderCred), &rookeryv1.ListReservationsRequest{})
			return err
		}, codes.OK},
		{"backend batch writes its own server only", func() error {
			resp, err := rookeryv1.NewDirectoryClient(anon).Batch(bearer(apitest.BackendCred), &rookeryv1.BatchRequest{Commands: []*rookeryv1.BatchCommand{
				{Op: rookeryv1.Operation_OPERATION_RESERVE, Name: "user.be1batch", Location: "imap-be01!default"},
				{Op: rookeryv1.Operation_OPERATION_RESERVE, Name: "user.be1other", Location: "imap-be02!default"}}})
			if err != nil {
				return err
			}
			if got := codes.Code(resp.GetResults()[0].GetCode()); got != codes.OK {
				return status.Errorf(codes.Internal, "own server: %s", got)
			}
			return status.Error(codes.Code(resp.GetResults()[1].GetCode()), resp.GetResults()[1].GetMessage())
		}, codes.PermissionDenied},
		{"backend manages the cluster", func() error {
			_, err := rookeryv1.NewClusterClient(anon).RemoveServer(bearer(apitest.BackendCred), &rookeryv1.RemoveServerRequest{Id: "n9"})
			return err
		}, codes.PermissionDenied},
		{"client calls the Peer service", func() error {
			_, err := rookeryv1.NewPeerClient(anon).Apply(bearer(apitest.AdminCred), &rookeryv1.PeerApplyRequest{Commands: fsm.EncodeCommands([]fsm.Command{{Op: fsm.OpDelete, Name: "user.admin"}})})
			return err
		}, codes.PermissionDenied},
		{"wrong peer secret", func() error {
			pctx := metadata.AppendToOutgoingContext(ctx, api.PeerTokenMetadata, "guess")
			_, err := rookeryv1.NewPeerClient(anon).ReadIndex(pctx, &rookeryv1.ReadIndexRequest{})
			return err
		}, codes.Unauthenticated},
		{"health needs no credentials", func() error {
			resp, err := healthpb.NewHealthClient(anon).Check(ctx, &healthpb.HealthCheckRequest{})
			if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return status.Errorf(codes.Internal, "health %v", resp.GetStatus())
			}
			return err
		}, codes.OK},
	}
	for _, tc := range cases {
		if err := tc.call(); status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
	// reserved_by is the authenticated identity, whatever the request said.
	for name, who := range map[string]string{"user.admin": "admin", "user.be1batch": "be1", "user.token": "ci-bot", "user.cert": "ops-admin", "user.basic": "admin", "user.be1": "be1"} {
		g, err := get(anon, bearer(apitest.ReaderCred), name)
		if err != nil || g.GetMailbox().GetReservedBy() != who {
			t.Errorf("%s: reserved_by %q (%v), want %q", name, g.GetMailbox().GetReservedBy(), err, who)
		}
	}
	// A plaintext client cannot talk to a TLS listener.
	_, err := get(conn(t, follower), bearer(apitest.AdminCred), "user.admin")
	if status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext to TLS: %v, want Unavailable", err)
	}
}

func TestNewServerRefusesAuthWithOpenPeerService(t *testing.T) {
	cfg := api.DefaultConfig()
	cfg.Tokens = []api.Token{{Identity: "ci", SHA256: api.HashToken("x")}}
	_, err := api.NewServer(cfg, (*cluster.Node)(nil), directory.NewLocalService(fsm.New(fsm.Config{})), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "Peer") {
		t.Fatalf("NewServer with tokens but no peer credential: %v, want an error about Peer RPCs", err)
	}
	cfg.Tokens = []api.Token{{Identity: "ci", SHA256: "not-hex"}}
	cfg.PeerSecret = "s"
	if _, err := api.NewServer(cfg, (*cluster.Node)(nil), directory.NewLocalService(fsm.New(fsm.Config{})), slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "SHA256") {
		t.Fatalf("NewServer with a malformed token hash: %v", err)
	}
	cfg = api.DefaultConfig()
	cfg.TLS.ClientCAFile = "/nonexistent"
	if _, err := api.NewServer(cfg, (*cluster.Node)(nil), directory.NewLocalService(fsm.New(fsm.Config{})), slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("NewServer with a client CA but no server certificate succeeded")
	}
}

func TestPeerRPCsAuthenticateByNodeCertificate(t *testing.T) {
	clients := apitest.NewPKI(t, "clients")
	nodes := apitest.NewPKI(t, "nodes")
	serverCert, serverKey := clients.Issue(t, "rookery-node", x509.ExtKeyUsageServerAuth)
	nodeCert, nodeKey := nodes.Issue(t, "node", x509.ExtKeyUsageClientAuth)
	authn := apitest.Authenticator(t)
	c := apitest.Start(t, apitest.Options{
		API: func(int) api.Config {
			cfg := api.DefaultConfig()
			cfg.TLS = api.TLSConfig{CertFile: serverCert, KeyFile: serverKey, ClientCAFile: clients.CAFile}
			cfg.Auth = authn
			cfg.PeerCAFile = nodes.CAFile // no shared secret: node certificates only
			return cfg
		},
		Cluster: func(_ int, cfg *cluster.Config) {
			cert, err := tls.LoadX509KeyPair(nodeCert, nodeKey)
			if err != nil {
				t.Fatal(err)
			}
			cfg.PeerDialOptions = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
				RootCAs: clients.Pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
			}))}
		},
	})
	ctx := testCtx(t)
	follower := c.Nodes[c.Follower()].APIAddr
	// A write through a follower is forwarded over a certificate-authenticated
	// Peer call.
	admin := conn(t, follower, grpc.WithTransportCredentials(credentials.NewTLS(clients.ClientTLS(t, apitest.AdminCertCN))))
	if _, err := rookeryv1.NewDirectoryClient(admin).Reserve(ctx, &rookeryv1.ReserveRequest{Name: "user.a", Location: "imap-be01!default"}); err != nil {
		t.Fatalf("write through a follower: %v", err)
	}
	// An operator certificate is not a node certificate.
	_, err := rookeryv1.NewPeerClient(admin).ReadIndex(ctx, &rookeryv1.ReadIndexRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("operator certificate on the Peer service: %v, want PermissionDenied", err)
	}
	cfg := nodes.ClientTLS(t, "node-x")
	cfg.RootCAs = clients.Pool // the server certificate comes from the client CA
	node := conn(t, follower, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if _, err := rookeryv1.NewPeerClient(node).ReadIndex(ctx, &rookeryv1.ReadIndexRequest{}); status.Code(err) != codes.FailedPrecondition {
		// A follower answers "not leader": the call got past authentication.
		t.Fatalf("node certificate on the Peer service: %v, want the follower's FailedPrecondition", err)
	}
	if _, err := rookeryv1.NewDirectoryClient(node).Reserve(ctx, &rookeryv1.ReserveRequest{Name: "user.b", Location: "imap-be01!default"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("node certificate writing as a client: %v, want PermissionDenied", err)
	}
}
