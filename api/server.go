package api

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/rookery/rookery/directory"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Server is the gRPC API of one node. Build it with NewServer, create the
// grpc.Server with ServerOptions, then call Register:
//
//	srv, err := api.NewServer(cfg, node, directory.NewService(node, node.Store()), logger)
//	gs := grpc.NewServer(srv.ServerOptions()...)
//	srv.Register(gs) // Directory, Cluster, Peer, health, reflection
//	gs.Serve(lis)
type Server struct {
	cfg   Config
	node  Node
	dir   *directory.Service
	log   *slog.Logger
	auth  *authenticator
	tls   *tls.Config
	views *viewCache
}

// NewServer checks cfg, loads its certificates and returns the API of
// node, whose directory the service dir serves.
func NewServer(cfg Config, node Node, dir *directory.Service, logger *slog.Logger) (*Server, error) {
	if node == nil || dir == nil {
		return nil, fmt.Errorf("api: nil node or directory service")
	}
	if logger == nil {
		logger = slog.Default()
	}
	cfg.fillDefaults()
	tlsCfg, peerRoots, err := cfg.serverTLS()
	if err != nil {
		return nil, err
	}
	auth, err := newAuthenticator(cfg, peerRoots, logger)
	if err != nil {
		return nil, err
	}
	if !auth.enabled {
		logger.Warn("grpc API has no authentication configured: every RPC, writes included, is open")
	} else if tlsCfg == nil {
		logger.Warn("grpc API authenticates without TLS: tokens and passwords cross the network in clear text")
	}
	return &Server{
		cfg:   cfg,
		node:  node,
		dir:   dir,
		log:   logger,
		auth:  auth,
		tls:   tlsCfg,
		views: newViewCache(cfg.MaxListViews, cfg.ListViewTTL),
	}, nil
}

// ServerOptions returns the options the grpc.Server must be created with:
// TLS credentials (when configured), the auth interceptors and keepalive
// settings that let long Watch streams survive idle NATs and detect dead
// clients.
func (s *Server) ServerOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.auth.UnaryInterceptor),
		grpc.ChainStreamInterceptor(s.auth.StreamInterceptor),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
	if s.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tls)))
	}
	return opts
}

// Register registers every service of a node on gs: Directory, Cluster,
// the node's Peer service, grpc.health.v1 and server reflection.
func (s *Server) Register(gs *grpc.Server) {
	rookeryv1.RegisterDirectoryServer(gs, &directoryServer{s: s})
	rookeryv1.RegisterClusterServer(gs, &clusterServer{s: s})
	healthpb.RegisterHealthServer(gs, &healthServer{s: s})
	s.node.RegisterPeerService(gs)
	reflection.Register(gs)
}

// NewGRPCServer is the short form: a grpc.Server with ServerOptions (plus
// extra) and every service registered.
func (s *Server) NewGRPCServer(extra ...grpc.ServerOption) *grpc.Server {
	gs := grpc.NewServer(append(s.ServerOptions(), extra...)...)
	s.Register(gs)
	return gs
}
