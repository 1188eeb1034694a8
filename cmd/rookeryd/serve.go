package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rookery/rookery/api"
	"github.com/rookery/rookery/auth"
	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/mupdatecompat"
	"github.com/rookery/rookery/reservations"
)

// listeners are bound before anything touches the data directory, so a
// port in use refuses the start with a message naming the setting.
type listeners struct {
	grpc, mupdate, mupdateTLS, debug net.Listener
}

func (l *listeners) close() {
	for _, ln := range []net.Listener{l.grpc, l.mupdate, l.mupdateTLS, l.debug} {
		if ln != nil {
			ln.Close()
		}
	}
}

func listen(cfg Config) (*listeners, error) {
	var l listeners
	bind := func(setting, addr string, dst *net.Listener) error {
		if addr == "" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s %s: %w", setting, addr, err)
		}
		*dst = ln
		return nil
	}
	for _, b := range []struct {
		setting, addr string
		dst           *net.Listener
	}{
		{"grpc.listen", cfg.GRPC.Listen, &l.grpc},
		{"mupdate.listen", cfg.Mupdate.Listen, &l.mupdate},
		{"mupdate.listen_tls", cfg.Mupdate.ListenTLS, &l.mupdateTLS},
		{"debug.listen", cfg.Debug.Listen, &l.debug},
	} {
		if err := bind(b.setting, b.addr, b.dst); err != nil {
			l.close()
			return nil, err
		}
	}
	return &l, nil
}

// serve runs the node until ctx ends, then shuts down in order: stop
// accepting MUPDATE and gRPC, finish in-flight work, leave raft cleanly.
func serve(ctx context.Context, cfg Config, logger *slog.Logger, reg *prometheus.Registry) error {
	lns, err := listen(cfg)
	if err != nil {
		return err
	}
	defer lns.close()

	authn, err := newAuthenticator(cfg)
	if err != nil {
		return err
	}
	peerSecret, err := readSecret("raft.peer_secret_file", cfg.Raft.PeerSecretFile)
	if err != nil {
		return err
	}
	ccfg, err := clusterConfig(cfg, lns.grpc.Addr().String(), peerSecret, logger)
	if err != nil {
		return err
	}
	obs := newNodeMetrics(reg)
	ccfg.Hooks = obs.cluster.Hooks()
	ccfg.Logger = quietOnShutdown(ctx, ccfg.Logger)
	node, err := cluster.Open(ctx, ccfg)
	if err != nil {
		return fmt.Errorf("open node (data dir %s): %w", cfg.Node.DataDir, err)
	}
	defer node.Close()

	// One directory service per node: MUPDATE, gRPC and reservation
	// expiry all read and write through it.
	dir := directory.NewService(node, node.Store())
	gs, err := newGRPCServer(cfg, node, dir, authn, peerSecret, logger, append(obs.grpc.ServerOptions(), cluster.PeerServerOptions()...)...)
	if err != nil {
		return err
	}
	go func() {
		if err := gs.Serve(lns.grpc); err != nil {
			logger.Error("grpc server", "err", err)
		}
	}()
	defer stopGRPC(gs)

	ms, err := newMupdateServer(cfg, dir, authn, logger, obs.mupdate.ObserveCommand)
	if err != nil {
		return err
	}
	obs.watch(node, ms)
	serveMupdate(ms, lns, logger)
	if lns.debug != nil {
		serveDebug(ctx, lns.debug, node, ms, reg, logger)
	}
	logger.Info("rookeryd serving", "node", cfg.Node.ID, "raft", node.RaftAddr(),
		"grpc", lns.grpc.Addr().String(), "mupdate", cfg.Mupdate.Listen, "mupdate_tls", cfg.Mupdate.ListenTLS)

	reloadUsersOnHUP(ctx, cfg.Auth.UsersFile, authn, logger)
	if ttl := time.Duration(cfg.Directory.ReservationTTL); ttl > 0 {
		// Stopped and waited for before the node closes (defers run last
		// first), so no release is proposed to a closed node.
		expiryCtx, stopExpiry := context.WithCancel(ctx)
		expiryDone := make(chan struct{})
		go func() {
			defer close(expiryDone)
			rlog := logger.With("component", "reservations")
			if err := reservations.Run(expiryCtx, node, dir, reservations.Config{TTL: ttl, Logger: rlog}); err != nil {
				rlog.Error("reservation expiry stopped", "err", err)
			}
		}()
		defer func() { stopExpiry(); <-expiryDone }()
	}
	var failure error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case <-node.Failed():
		// The state machine met an entry or snapshot it cannot apply
		// (docs/integrity.md): stop serving and exit non-zero.
		failure = fmt.Errorf("node stopped (data dir %s): %w", cfg.Node.DataDir, node.Failure())
		logger.Error("node failed; shutting down", "err", failure)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ms.Shutdown(sctx); err != nil && !errors.Is(err, mupdatecompat.ErrServerClosed) {
		logger.Warn("mupdate shutdown", "err", err)
	}
	return failure
}

// reloadUsersOnHUP re-reads auth.users_file on SIGHUP, so passwords can be
// rotated without a restart (and without dropping UPDATE streams). A file
// that fails to parse keeps the previous users.
func reloadUsersOnHUP(ctx context.Context, path string, authn *auth.Authenticator, logger *slog.Logger) {
	if path == "" {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				users, err := auth.LoadUsers(path)
				if err != nil {
					logger.Error("SIGHUP: users file not reloaded; keeping the previous one", "file", path, "err", err)
					continue
				}
				authn.SetUsers(users)
				logger.Info("SIGHUP: users file reloaded", "file", path, "users", users.Len())
			}
		}
	}()
}

func stopGRPC(gs *grpc.Server) {
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second): // Watch streams never end on their own
		gs.Stop()
	}
}

func newAuthenticator(cfg Config) (*auth.Authenticator, error) {
	acfg := auth.DefaultConfig()
	acfg.Writers = cfg.Auth.Admins
	acfg.Readers = cfg.Auth.Readers
	acfg.Proxies = cfg.Auth.ProxyIdentities
	acfg.Limits = loginLimits(cfg.Auth)
	servers, err := parsePairs("mupdate.backend_servers", cfg.Mupdate.BackendServers)
	if err != nil {
		return nil, err
	}
	acfg.Servers = servers
	users := &auth.Users{}
	if cfg.Auth.UsersFile != "" {
		if users, err = auth.LoadUsers(cfg.Auth.UsersFile); err != nil {
			return nil, fmt.Errorf("auth.users_file: %w", err)
		}
	}
	return auth.New(acfg, users), nil
}

func readSecret(setting, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", setting, err)
	}
	s := strings.TrimSpace(string(b))
	if len(s) < 16 {
		return "", fmt.Errorf("%s: the secret in %s is shorter than 16 characters", setting, path)
	}
	return s, nil
}

func clusterConfig(cfg Config, grpcAddr, peerSecret string, logger *slog.Logger) (cluster.Config, error) {
	c := cluster.DefaultConfig()
	c.NodeID = cfg.Node.ID
	c.DataDir = cfg.Node.DataDir
	c.RaftAddr = cfg.Raft.Address
	c.RaftAdvertise = cfg.Raft.Advertise
	c.APIAddr = cfg.GRPC.Advertise
	if c.APIAddr == "" {
		c.APIAddr = grpcAddr
	}
	c.Bootstrap = cfg.Raft.Bootstrap
	peers, err := parsePeers(cfg.Raft.Peers)
	if err != nil {
		return c, fmt.Errorf("raft.peers: %w", err)
	}
	for _, p := range peers {
		c.Peers = append(c.Peers, cluster.Peer{ID: p.ID, RaftAddr: p.RaftAddr, APIAddr: p.APIAddr})
	}
	c.Join = cfg.Raft.Join
	c.HeartbeatTimeout = cfg.Raft.HeartbeatTimeout.Std()
	c.ElectionTimeout = cfg.Raft.ElectionTimeout.Std()
	c.LeaderLeaseTimeout = cfg.Raft.LeaderLeaseTimeout.Std()
	c.CommitTimeout = cfg.Raft.CommitTimeout.Std()
	c.WriteTimeout = cfg.Raft.WriteTimeout.Std()
	c.SnapshotInterval = cfg.Raft.SnapshotInterval.Std()
	c.ConsistencyCheckInterval = cfg.Raft.ConsistencyCheckInterval.Std()
	if c.ConsistencyCheckInterval == 0 {
		c.ConsistencyCheckInterval = -1 // disabled
	}
	c.SnapshotThreshold = cfg.Raft.SnapshotThreshold
	c.TrailingLogs = cfg.Raft.TrailingLogs
	c.SnapshotCommands = cfg.Raft.SnapshotCommands
	if c.SnapshotCommands == 0 {
		c.SnapshotCommands = -1 // entries only
	}
	c.LogStore = cfg.Raft.LogStore
	c.ReadMode = cfg.Raft.ReadMode
	c.PersistBeforeReplicate = cfg.Raft.PersistBeforeReplicate
	c.FollowerHold = cfg.Raft.FollowerHold.Std()
	c.MaxProposalsInFlight = cfg.Raft.ProposalsInFlight
	c.BoltDirect = cfg.Raft.BoltDirect
	if c.LeaseClock, err = leaseClock(cfg.Node.DataDir, logger); err != nil {
		return c, err
	}
	c.FSM = fsm.DefaultConfig()
	c.FSM.HistorySize = cfg.Raft.HistorySize
	c.Logger = logger.With("component", "cluster")

	peerTLS, err := raftTLS(cfg.Raft)
	if err != nil {
		return c, err
	}
	c.RaftTLS = peerTLS
	// Without raft TLS the cluster secret authenticates and seals the raft
	// links (with it, the certificates do).
	if peerTLS == nil && peerSecret != "" {
		c.RaftSecret = []byte(peerSecret)
	}
	c.RaftInsecure = cfg.Raft.Insecure
	creds := insecure.NewCredentials()
	if peerTLS != nil {
		creds = credentials.NewTLS(peerTLS.Clone())
	} else if cfg.GRPC.TLSCert != "" {
		// The API listener speaks TLS; trust it with the system roots plus
		// the raft CA when one is configured.
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	c.PeerDialOptions = []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if peerSecret != "" {
		c.PeerDialOptions = append(c.PeerDialOptions,
			grpc.WithPerRPCCredentials(api.PeerCredentials(peerSecret, peerTLS != nil || cfg.GRPC.TLSCert != "")))
	}
	return c, nil
}

// raftTLS builds the mutual-TLS config for node-to-node traffic.
func raftTLS(r RaftConfig) (*tls.Config, error) {
	if r.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(r.TLSCert, r.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("raft.tls_cert/raft.tls_key: %w", err)
	}
	pem, err := os.ReadFile(r.TLSCA)
	if err != nil {
		return nil, fmt.Errorf("raft.tls_ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("raft.tls_ca %s: no PEM certificate in it", r.TLSCA)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}, nil
}

func newGRPCServer(cfg Config, node *cluster.Node, dir *directory.Service, authn *auth.Authenticator, peerSecret string, logger *slog.Logger, opts ...grpc.ServerOption) (*grpc.Server, error) {
	acfg := api.DefaultConfig()
	acfg.TLS = api.TLSConfig{CertFile: cfg.GRPC.TLSCert, KeyFile: cfg.GRPC.TLSKey, ClientCAFile: cfg.GRPC.ClientCA}
	if cfg.Auth.UsersFile != "" {
		acfg.Auth = authn
	}
	acfg.OpenReads = cfg.GRPC.OpenReads
	acfg.PeerSecret = peerSecret
	acfg.PeerCAFile = cfg.Raft.TLSCA
	srv, err := api.NewServer(acfg, node, dir, logger.With("component", "grpc"))
	if err != nil {
		return nil, fmt.Errorf("grpc: %w", err)
	}
	return srv.NewGRPCServer(opts...), nil
}

// The cluster node is the directory's replica.
var _ directory.Replica = (*cluster.Node)(nil)
