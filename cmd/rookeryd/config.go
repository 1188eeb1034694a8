package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/config"
)

// Config is the rookeryd configuration file (TOML). Every setting can also
// be given as a flag named after its path, e.g. -raft.address.
type Config struct {
	Node    NodeConfig    `toml:"node"`
	Log     LogConfig     `toml:"log"`
	Raft    RaftConfig    `toml:"raft"`
	GRPC    GRPCConfig    `toml:"grpc"`
	Mupdate MupdateConfig `toml:"mupdate"`
	Auth    AuthConfig    `toml:"auth"`
	Debug   DebugConfig   `toml:"debug"`
	// Directory holds directory maintenance policies.
	Directory DirectoryConfig `toml:"directory"`
}

// DirectoryConfig holds directory maintenance policies.
type DirectoryConfig struct {
	// ReservationTTL releases (through raft, logged) reservations older
	// than this. Off by default: Cyrus never expires a reservation, and a
	// long XFER holds one legitimately.
	ReservationTTL config.Duration `toml:"reservation_ttl" help:"release reservations older than this (0: never)"`
}

// DebugConfig configures the operator HTTP listener.
type DebugConfig struct {
	// Listen serves /metrics (Prometheus), /debug/pprof/ and /debug/vars
	// (node status as JSON) for operators. Keep it on a loopback or
	// management address.
	Listen string `toml:"listen" help:"HTTP address for /metrics (Prometheus), /debug/pprof and /debug/vars (empty: off)"`
}

// NodeConfig names the node and where it keeps its data.
type NodeConfig struct {
	ID      string `toml:"id" help:"node ID, unique in the cluster (required)"`
	DataDir string `toml:"data_dir" help:"directory for the raft log and snapshots (required)"`
}

// LogConfig selects the slog handler.
type LogConfig struct {
	Level  string `toml:"level" help:"debug, info, warn or error"`
	Format string `toml:"format" help:"text or json"`
}

// RaftConfig configures consensus and membership.
type RaftConfig struct {
	Address   string `toml:"address" help:"raft TCP address (bind, and advertise unless raft.advertise is set)"`
	Advertise string `toml:"advertise" help:"raft address peers dial when it differs from raft.address (NAT, proxy, container)"`
	Bootstrap bool   `toml:"bootstrap" help:"bootstrap a new single-node cluster when the data dir is empty"`
	// Peers is the static voter list: id=raft_addr/grpc_addr, comma separated.
	Peers []string `toml:"peers" help:"static voters id=raft_addr/grpc_addr,... (all nodes the same list)"`
	Join  []string `toml:"join" help:"gRPC addresses of members to join through when the data dir is empty"`

	HeartbeatTimeout   config.Duration `toml:"heartbeat_timeout" help:"raft heartbeat timeout"`
	ElectionTimeout    config.Duration `toml:"election_timeout" help:"raft election timeout"`
	LeaderLeaseTimeout config.Duration `toml:"leader_lease_timeout" help:"raft leader lease timeout (default: heartbeat_timeout)"`
	CommitTimeout      config.Duration `toml:"commit_timeout" help:"how often the leader sends a follower an AppendEntries when nothing new is to be replicated"`
	WriteTimeout       config.Duration `toml:"write_timeout" help:"bound on a write or linearizable read without quorum"`
	SnapshotInterval   config.Duration `toml:"snapshot_interval" help:"how often raft checks whether to snapshot"`
	SnapshotThreshold  uint64          `toml:"snapshot_threshold" help:"log entries between snapshots"`
	TrailingLogs       uint64          `toml:"trailing_logs" help:"log entries kept after a snapshot"`
	SnapshotCommands   int             `toml:"snapshot_commands" help:"directory commands applied between snapshots, counted besides snapshot_threshold's entries, which a bulk import fills with 4096 commands each (0: entries only)"`
	HistorySize        int             `toml:"history_size" help:"change events kept for Watch/UPDATE resumption"`
	LogStore           string          `toml:"log_store" help:"raft log store: bolt (raft.db) or wal (wal/, one fsync per append); fixed when the data dir is created"`
	// ConsistencyCheckInterval: how often the node compares its directory
	// hash with the other members' (0 disables the periodic check).
	ConsistencyCheckInterval config.Duration `toml:"consistency_check_interval" help:"how often to compare the directory hash with the other members (0: only on rookeryctl check consistency)"`
	// ReadMode: cluster.ReadLease says what "lease" assumes of clocks.
	ReadMode string `toml:"read_mode" help:"how the leader confirms linearizable reads: linearizable (a heartbeat round) or lease (local while a lease holds; assumes clock rates within 10%; every member the same mode)"`
	// BoltDirect: cluster.Config.BoltDirect.
	BoltDirect bool `toml:"bolt_direct" help:"with log_store bolt, write each append straight into raft.db (two syncs) instead of through raft.journal (one sync)"`
	// ProposalsInFlight: cluster.Config.MaxProposalsInFlight.
	ProposalsInFlight int `toml:"proposals_in_flight" help:"raft entries the leader has written and not yet seen committed before new writes wait to share the next one; also the batches a follower forwards to the leader at once"`
	// PersistBeforeReplicate: cluster.Config.PersistBeforeReplicate.
	PersistBeforeReplicate bool `toml:"persist_before_replicate" help:"send a new entry to followers only after the leader wrote it (hashicorp/raft's order); by default a quorum of followers writes it while the leader does"`
	// FollowerHold: cluster.Config.FollowerHold.
	FollowerHold config.Duration `toml:"follower_hold" help:"hold new entries up to this long for the followers a commit does not need, so they sync several at once (for nodes sharing a disk); 0 sends each entry to every follower at once"`

	TLSCert string `toml:"tls_cert" help:"PEM certificate for raft and peer traffic (enables TLS between nodes)"`
	TLSKey  string `toml:"tls_key" help:"PEM key for tls_cert"`
	TLSCA   string `toml:"tls_ca" help:"PEM CA that signs every node's certificate"`
	// PeerSecretFile holds the cluster secret nodes present to each other's
	// Peer service (forwarded writes, read index, join).
	PeerSecretFile string `toml:"peer_secret_file" help:"file with the cluster shared secret for node-to-node gRPC and raft"`
	// Insecure runs raft without authentication when neither the secret
	// nor raft TLS is set: anyone who reaches raft.address can then rewrite
	// the directory. Without it such a node refuses to start.
	Insecure bool `toml:"insecure" help:"run raft unauthenticated and in plaintext when neither raft.peer_secret_file nor raft TLS is set (tests only)"`
}

// GRPCConfig configures the gRPC API listener.
type GRPCConfig struct {
	Listen    string `toml:"listen" help:"gRPC listen address"`
	Advertise string `toml:"advertise" help:"gRPC address peers use to reach this node (default: listen)"`
	TLSCert   string `toml:"tls_cert" help:"PEM server certificate (enables TLS)"`
	TLSKey    string `toml:"tls_key" help:"PEM server key"`
	ClientCA  string `toml:"client_ca" help:"PEM CA for client certificates (enables mTLS identities)"`
	OpenReads bool   `toml:"open_reads" help:"allow unauthenticated reads (Get, List, Watch, Status)"`
	// Unauthenticated serves every RPC, writes included, to anyone. Only
	// for a laptop or a test; without it a node with no identities
	// configured refuses to start.
	Unauthenticated bool `toml:"unauthenticated" help:"serve every RPC, writes included, without authentication (tests only)"`
}

// MupdateConfig configures the MUPDATE (RFC 3656) listeners.
type MupdateConfig struct {
	Listen     string `toml:"listen" help:"MUPDATE listen address (STARTTLS offered when TLS is configured)"`
	ListenTLS  string `toml:"listen_tls" help:"implicit-TLS MUPDATE listen address (Cyrus host:port/tls)"`
	TLSCert    string `toml:"tls_cert" help:"PEM certificate for STARTTLS and implicit TLS"`
	TLSKey     string `toml:"tls_key" help:"PEM key"`
	Servername string `toml:"servername" help:"host name in the MUPDATE banner"`
	// QuotedOutput lists identities that get quoted strings instead of
	// {N+} literals (Cyrus 3.4.8, 3.6.5, 3.8.3 clients, cyrus-imapd #4932).
	QuotedOutput []string `toml:"quoted_output" help:"identities that get quoted strings instead of {N+} literals"`
	// BytewiseOrder lists identities that get LIST/UPDATE in Cyrus <=3.4
	// bytewise name order instead of 3.6 dbname order (#4946).
	BytewiseOrder  []string        `toml:"bytewise_order" help:"identities that get Cyrus <=3.4 bytewise order"`
	MaxConnections int             `toml:"max_connections" help:"concurrent MUPDATE connections"`
	IdleTimeout    config.Duration `toml:"idle_timeout" help:"idle timeout before UPDATE streaming"`
	NoopTimeout    config.Duration `toml:"noop_timeout" help:"bound on the NOOP barrier before the connection is closed"`
	// BackendServers binds identities to the server part they may write:
	// identity=servername, comma separated. Unlisted writers are unrestricted.
	BackendServers []string `toml:"backend_servers" help:"identity=servername,... restricts what each backend identity may write"`

	// Login protection (limits.go).
	RequireTLS          bool            `toml:"require_tls" help:"refuse AUTHENTICATE until STARTTLS (or on mupdate.listen_tls); needs mupdate.tls_cert"`
	PreAuthTimeout      config.Duration `toml:"pre_auth_timeout" help:"close connections that have not logged in this long after connecting (0: off)"`
	MaxPreAuthPerSource int             `toml:"max_preauth_per_source" help:"unauthenticated connections one address may hold; a newcomer replaces one idle for 200ms, else is refused (0: off)"`
}

// AuthConfig holds identities shared by MUPDATE and gRPC.
type AuthConfig struct {
	UsersFile string   `toml:"users_file" help:"file of name:bcrypt-hash lines"`
	Admins    []string `toml:"admins" help:"identities that may write"`
	Readers   []string `toml:"readers" help:"identities that may only read (frontend slaves, tools)"`
	// ProxyIdentities may log in as another identity (SASL authzid), as
	// Cyrus proxyservers may, and only as one with no more rights.
	ProxyIdentities []string `toml:"proxy_identities" help:"identities that may act as another identity (SASL authzid); empty: none"`

	// Failed-login back-off, shared by MUPDATE and gRPC (limits.go).
	FailedLoginsPerIdentity int             `toml:"failed_logins_per_identity" help:"failed logins of one identity per minute before it is throttled (0: off)"`
	FailedLoginsPerSource   int             `toml:"failed_logins_per_source" help:"failed logins from one address per minute before it is throttled (0: off)"`
	MaxLoginBackoff         config.Duration `toml:"max_login_backoff" help:"longest throttling back-off (it doubles from 2 s on each trip)"`
}

func defaultConfig() Config {
	var c Config
	c.Log.Level = "info"
	c.Log.Format = "text"
	c.Raft.Address = "127.0.0.1:7001"
	c.Raft.HeartbeatTimeout = config.Duration(200 * time.Millisecond)
	c.Raft.ElectionTimeout = config.Duration(200 * time.Millisecond)
	c.Raft.CommitTimeout = config.Duration(cluster.DefaultConfig().CommitTimeout)
	c.Raft.WriteTimeout = config.Duration(5 * time.Second)
	c.Raft.SnapshotInterval = config.Duration(2 * time.Minute)
	c.Raft.SnapshotThreshold = 100_000
	c.Raft.TrailingLogs = 50_000
	c.Raft.SnapshotCommands = cluster.DefaultConfig().SnapshotCommands
	c.Raft.ProposalsInFlight = cluster.DefaultConfig().MaxProposalsInFlight
	c.Raft.HistorySize = 100_000
	c.Raft.LogStore = cluster.LogStoreBolt
	c.Raft.ReadMode = cluster.ReadLinearizable
	c.Raft.ConsistencyCheckInterval = config.Duration(5 * time.Minute)
	c.GRPC.Listen = "127.0.0.1:7101"
	c.Mupdate.Listen = "127.0.0.1:3905"
	c.Mupdate.MaxConnections = 1024
	c.Mupdate.IdleTimeout = config.Duration(30 * time.Minute)
	c.Mupdate.NoopTimeout = config.Duration(5 * time.Second)
	setLoginDefaults(&c)
	return c
}

// peer is one entry of raft.peers (or of snapshot-restore's --peers).
type peer struct{ ID, RaftAddr, APIAddr string }

// parsePeers reads id=raft_addr/grpc_addr entries; callers name the setting.
func parsePeers(list []string) ([]peer, error) {
	var out []peer
	for _, p := range list {
		id, addrs, ok := strings.Cut(p, "=")
		raftAddr, apiAddr, ok2 := strings.Cut(addrs, "/")
		if !ok || !ok2 || id == "" {
			return nil, fmt.Errorf("%q is not id=raft_addr/grpc_addr", p)
		}
		for _, a := range []string{raftAddr, apiAddr} {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("%q: %w", p, err)
			}
		}
		out = append(out, peer{ID: id, RaftAddr: raftAddr, APIAddr: apiAddr})
	}
	return out, nil
}

func parsePairs(setting string, list []string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range list {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("%s: %q is not identity=servername", setting, p)
		}
		out[k] = v
	}
	return out, nil
}

// validate checks what can be checked without touching the disk or network.
func (c *Config) validate() error {
	var errs []error
	if c.Node.ID == "" {
		errs = append(errs, errors.New("node.id is required"))
	}
	if c.Node.DataDir == "" {
		errs = append(errs, errors.New("node.data_dir is required"))
	}
	for name, addr := range map[string]string{"raft.address": c.Raft.Address, "grpc.listen": c.GRPC.Listen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, addr, err))
		}
	}
	if (c.GRPC.TLSCert == "") != (c.GRPC.TLSKey == "") {
		errs = append(errs, errors.New("grpc.tls_cert and grpc.tls_key go together"))
	}
	if c.Directory.ReservationTTL < 0 {
		errs = append(errs, errors.New("directory.reservation_ttl must not be negative"))
	}
	if (c.Mupdate.TLSCert == "") != (c.Mupdate.TLSKey == "") {
		errs = append(errs, errors.New("mupdate.tls_cert and mupdate.tls_key go together"))
	}
	if c.Mupdate.ListenTLS != "" && c.Mupdate.TLSCert == "" {
		errs = append(errs, errors.New("mupdate.listen_tls needs mupdate.tls_cert and mupdate.tls_key"))
	}
	if (c.Raft.TLSCert == "") != (c.Raft.TLSKey == "") || (c.Raft.TLSCert != "" && c.Raft.TLSCA == "") {
		errs = append(errs, errors.New("raft TLS needs raft.tls_cert, raft.tls_key and raft.tls_ca together"))
	}
	if c.Mupdate.Listen != "" || c.Mupdate.ListenTLS != "" {
		if c.Auth.UsersFile == "" {
			errs = append(errs, errors.New("auth.users_file is required to serve MUPDATE"))
		}
	}
	if c.Auth.UsersFile == "" && c.GRPC.ClientCA == "" && !c.GRPC.Unauthenticated {
		errs = append(errs, errors.New("no identities configured: set auth.users_file (or grpc.client_ca), or grpc.unauthenticated=true to serve writes to anyone"))
	}
	if c.Auth.UsersFile != "" && c.Raft.PeerSecretFile == "" && c.Raft.TLSCert == "" {
		errs = append(errs, errors.New("auth.users_file turns authentication on: set raft.peer_secret_file (or raft TLS) so nodes can authenticate to each other"))
	}
	if c.Raft.PeerSecretFile == "" && c.Raft.TLSCert == "" && !c.Raft.Insecure {
		errs = append(errs, errors.New("raft connections would be unauthenticated: set raft.peer_secret_file (the cluster secret) or raft.tls_cert/raft.tls_key/raft.tls_ca, or raft.insecure=true to accept that anyone who reaches raft.address can rewrite the directory"))
	}
	if c.Raft.LogStore != cluster.LogStoreBolt && c.Raft.LogStore != cluster.LogStoreWAL {
		errs = append(errs, fmt.Errorf("raft.log_store %q: want %q or %q", c.Raft.LogStore, cluster.LogStoreBolt, cluster.LogStoreWAL))
	}
	if d := c.Raft.CommitTimeout.Std(); d != 0 && d < time.Millisecond {
		errs = append(errs, fmt.Errorf("raft.commit_timeout %v: hashicorp/raft needs at least 1ms", d))
	}
	if d := c.Raft.FollowerHold.Std(); d < 0 {
		errs = append(errs, fmt.Errorf("raft.follower_hold %v: want 0 or more", d))
	}
	if c.Raft.ReadMode != cluster.ReadLinearizable && c.Raft.ReadMode != cluster.ReadLease {
		errs = append(errs, fmt.Errorf("raft.read_mode %q: want %q or %q", c.Raft.ReadMode, cluster.ReadLinearizable, cluster.ReadLease))
	}
	if _, err := parsePeers(c.Raft.Peers); err != nil {
		errs = append(errs, fmt.Errorf("raft.peers: %w", err))
	}
	if _, err := parsePairs("mupdate.backend_servers", c.Mupdate.BackendServers); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.validateLogin()...)
	return errors.Join(errs...)
}
