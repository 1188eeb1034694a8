package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/rookery/rookery/config"
)

// Backend authentication modes.
const (
	// AuthPassthrough hands the user's own credentials to the backend,
	// which verifies them. The gateway needs no password database.
	AuthPassthrough = "passthrough"
	// AuthProxy verifies the user at the gateway (Config.Authenticator or
	// Users.File) and logs in to the backend as Backend.AuthName with the
	// user as SASL authorization id, as Cyrus "proxyservers" allows.
	AuthProxy = "proxy"
)

// Backend TLS modes.
const (
	BackendTLSNone     = "none"
	BackendTLSStartTLS = "starttls"
	BackendTLSImplicit = "tls"
)

// Config is the whole gateway configuration. The toml tags are the file
// keys under [gateway]; config.Load derives one flag per leaf setting
// from them (e.g. -gateway.listen.imap).
type Config struct {
	// Hostname is used in greetings and as the LMTP server name.
	Hostname string          `toml:"hostname" help:"name shown in greetings"`
	Listen   ListenConfig    `toml:"listen"`
	TLS      TLSConfig       `toml:"tls"`
	Backend  BackendConfig   `toml:"backend"`
	Names    NamesConfig     `toml:"names"`
	Users    UsersConfig     `toml:"users"`
	Limits   LimitsConfig    `toml:"limits"`
	IMAP     IMAPConfig      `toml:"imap"`
	LMTP     LMTPConfig      `toml:"lmtp"`
	Dir      DirectoryConfig `toml:"directory"`
	Metrics  MetricsConfig   `toml:"metrics"`
	// Servers maps a Cyrus servername (the part of a MUPDATE location
	// before '!') to the addresses of that backend's services.
	Servers map[string]ServerAddrs `toml:"servers"`

	// Logger receives the gateway's logs (slog.Default when nil).
	Logger *slog.Logger `toml:"-"`
	// Authenticator verifies users in proxy mode. When nil and
	// Users.File is set, a bcrypt password file is used.
	Authenticator Authenticator `toml:"-"`
}

// MetricsConfig configures the operator HTTP listener of rookery-gateway.
type MetricsConfig struct {
	// Listen serves /metrics (Prometheus text format) and /readyz (200 once the
	// replica has caught up, 503 before: for load-balancer health checks).
	Listen string `toml:"listen" help:"HTTP address for /metrics and /readyz (empty: off)"`
}

// ListenConfig holds listener addresses; an empty address disables it.
type ListenConfig struct {
	IMAP  string `toml:"imap" help:"IMAP listen address (STARTTLS when TLS is configured)"`
	IMAPS string `toml:"imaps" help:"IMAP implicit-TLS listen address"`
	POP3  string `toml:"pop3" help:"POP3 listen address (STLS when TLS is configured)"`
	POP3S string `toml:"pop3s" help:"POP3 implicit-TLS listen address"`
	LMTP  string `toml:"lmtp" help:"LMTP listen address (STARTTLS when TLS is configured)"`
}

// TLSConfig is the gateway's own certificate.
type TLSConfig struct {
	CertFile string `toml:"cert_file" help:"PEM certificate chain"`
	KeyFile  string `toml:"key_file" help:"PEM private key"`
	// Required refuses plaintext logins: IMAP advertises LOGINDISABLED and
	// hides AUTH= before STARTTLS, POP3 refuses USER/PASS/AUTH.
	Required bool `toml:"required" help:"refuse logins before TLS"`
}

// BackendConfig says how the gateway reaches and logs in to backends.
type BackendConfig struct {
	Auth     string `toml:"auth" help:"passthrough or proxy"`
	AuthName string `toml:"authname" help:"proxy identity (in the backends' proxyservers; an admin for LMTP)"`
	Password string `toml:"password" help:"password of the proxy identity"`
	// TLS is none, starttls or tls (implicit).
	TLS                string          `toml:"tls" help:"none, starttls or tls"`
	CAFile             string          `toml:"ca_file" help:"CA bundle for backend certificates"`
	InsecureSkipVerify bool            `toml:"insecure_skip_verify" help:"do not verify backend certificates"`
	DialTimeout        config.Duration `toml:"dial_timeout" help:"backend connect timeout"`
	LoginTimeout       config.Duration `toml:"login_timeout" help:"backend greeting+login timeout"`
}

// ServerAddrs are one backend's service addresses (host:port).
type ServerAddrs struct {
	IMAP string `toml:"imap"`
	POP3 string `toml:"pop3"`
	LMTP string `toml:"lmtp"`
}

// NamesConfig mirrors the Cyrus options that shape internal names.
type NamesConfig struct {
	VirtualDomains bool   `toml:"virtual_domains" help:"Cyrus virtdomains"`
	DefaultDomain  string `toml:"default_domain" help:"Cyrus defaultdomain"`
	Lowercase      bool   `toml:"lowercase" help:"Cyrus username_tolower"`
	// AltNamespace and UnixHierarchySep mirror the Cyrus options of the
	// same names (both on by default since Cyrus 3.0); with them the
	// IMAP session shows a user's folders beside INBOX, other users under
	// UserPrefix and shared folders under SharedPrefix, with '/' between
	// levels. They must match the backends' settings, because the gateway
	// passes mailbox names to backends unchanged.
	AltNamespace     bool   `toml:"altnamespace" help:"Cyrus altnamespace"`
	UnixHierarchySep bool   `toml:"unixhierarchysep" help:"Cyrus unixhierarchysep"`
	UserPrefix       string `toml:"userprefix" help:"Cyrus userprefix (altnamespace)"`
	SharedPrefix     string `toml:"sharedprefix" help:"Cyrus sharedprefix (altnamespace)"`
}

// UsersConfig configures the built-in authenticator for proxy mode.
type UsersConfig struct {
	File string `toml:"file" help:"user<TAB or :>bcrypt-hash per line (proxy mode)"`
}

// LimitsConfig bounds what one client can cost the gateway.
type LimitsConfig struct {
	MaxConnections      int `toml:"max_connections" help:"concurrent client connections (0 = unlimited)"`
	MaxConnectionsPerIP int `toml:"max_connections_per_ip" help:"concurrent connections per source IP (0 = unlimited)"`
	// LoginFailures failed logins per source IP within LoginWindow block
	// further logins from that IP until the window passes.
	LoginFailures int             `toml:"login_failures" help:"failed logins per IP per window before blocking"`
	LoginWindow   config.Duration `toml:"login_window" help:"window for login_failures"`
	MaxTrackedIPs int             `toml:"max_tracked_ips" help:"source IPs the login limiter remembers"`
	// AuthFailureDelay is the minimum time any failed login takes, so an
	// unknown user answers as slowly as a wrong password does at Cyrus
	// (failedloginpause, 3s by default).
	AuthFailureDelay config.Duration `toml:"auth_failure_delay" help:"minimum duration of a failed login"`
	PreLoginTimeout  config.Duration `toml:"prelogin_timeout" help:"idle timeout before login"`
	MaxLine          int             `toml:"max_line" help:"longest command line accepted before login"`
	MaxLiteral       int             `toml:"max_literal" help:"largest literal accepted before login"`
	MaxBadCommands   int             `toml:"max_bad_commands" help:"protocol errors before the connection is closed"`
}

// IMAPConfig tunes the IMAP front end.
type IMAPConfig struct {
	// HideCapabilities are removed (prefix match, case-insensitive) from
	// the backend capabilities shown after login: what describes the
	// backend's own login or its murder cannot apply through the gateway.
	HideCapabilities []string `toml:"hide_capabilities" help:"backend capabilities not shown to clients"`
	// Mode is "murder" (the default: a murder frontend that answers from
	// the directory replica and proxies each command to the backend of
	// the mailbox it names, so shared folders on every backend are
	// visible) or "relay" (pin the session to the INBOX backend and
	// relay bytes, as a plain proxy such as perdition does).
	Mode string `toml:"mode" help:"murder (uniform namespace) or relay (byte relay to the INBOX backend)"`
	// DefaultServer is where CREATE puts a mailbox outside every user's
	// hierarchy whose parent does not exist (Cyrus "defaultserver"); empty
	// means the user's INBOX backend.
	DefaultServer string `toml:"default_server" help:"backend for new top-level shared mailboxes"`
}

// IMAP session modes.
const (
	IMAPModeMurder = "murder"
	IMAPModeRelay  = "relay"
)

// LMTPConfig tunes the LMTP front end.
type LMTPConfig struct {
	MaxMessageBytes int64 `toml:"max_message_bytes" help:"largest message accepted"`
	MaxRecipients   int   `toml:"max_recipients" help:"recipients per transaction"`
	// MaxLineLength bounds command and message lines. RFC 5321 allows
	// 1000, but mail with longer lines exists and Cyrus lmtpd takes it.
	MaxLineLength int             `toml:"max_line_length" help:"longest LMTP line (commands and message)"`
	Timeout       config.Duration `toml:"timeout" help:"read/write timeout on LMTP connections"`
}

// DirectoryConfig says where the replica comes from: exactly one of
// Endpoints (the Rookery cluster, production), Mupdate (interim) or
// StaticFile (manual testing).
type DirectoryConfig struct {
	// Endpoints are Rookery nodes' gRPC addresses; the replica follows
	// the cluster's Watch stream through any of them.
	Endpoints []string `toml:"endpoints" help:"Rookery gRPC endpoints to watch (host:port,...)"`
	// Token authenticates the Watch ("user:password" or an API token).
	Token string `toml:"token" help:"gRPC bearer token for the directory watch"`
	// CAFile enables TLS to the endpoints (plaintext when empty).
	CAFile string `toml:"ca_file" help:"CA bundle for the endpoints' TLS certificates"`
	// StaleAfter marks the replica not ready after this long without news
	// from the cluster, so unknown recipients get 451, not 550.
	StaleAfter config.Duration `toml:"stale_after" help:"silence after which the replica is not ready"`
	// StaticFile loads a fixed directory (name location [RESERVED] per
	// line). FOR MANUAL TESTING ONLY: it never changes while running.
	StaticFile string `toml:"static_file" help:"TESTING ONLY: fixed directory file"`
	// Mupdate follows a MUPDATE server's UPDATE stream (a Cyrus mupdate
	// master or rookeryd's MUPDATE port) until the gRPC Watch feed is wired.
	Mupdate         string `toml:"mupdate" help:"interim feed: MUPDATE server host:port to follow with UPDATE"`
	MupdateUser     string `toml:"mupdate_user" help:"MUPDATE login for the interim feed"`
	MupdatePassword string `toml:"mupdate_password" help:"MUPDATE password for the interim feed"`
}

// DefaultConfig returns settings that match Cyrus's own defaults where
// there is one (3 s failed-login pause, username_tolower) and otherwise
// conservative limits. No listener is enabled.
func DefaultConfig() Config {
	return Config{
		Hostname: "localhost",
		Backend: BackendConfig{
			Auth:         AuthPassthrough,
			TLS:          BackendTLSNone,
			DialTimeout:  config.Duration(5 * time.Second),
			LoginTimeout: config.Duration(30 * time.Second),
		},
		Names: NamesConfig{
			Lowercase:        true,
			AltNamespace:     true,
			UnixHierarchySep: true,
			UserPrefix:       "Other Users",
			SharedPrefix:     "Shared Folders",
		},
		Limits: LimitsConfig{
			MaxConnections:      10000,
			MaxConnectionsPerIP: 100,
			LoginFailures:       10,
			LoginWindow:         config.Duration(5 * time.Minute),
			MaxTrackedIPs:       100_000,
			AuthFailureDelay:    config.Duration(3 * time.Second),
			PreLoginTimeout:     config.Duration(2 * time.Minute),
			MaxLine:             8192,
			MaxLiteral:          8192,
			MaxBadCommands:      10,
		},
		IMAP: IMAPConfig{
			HideCapabilities: []string{"STARTTLS", "LOGINDISABLED", "AUTH=", "SASL-IR", "MUPDATE=", "MAILBOX-REFERRALS"},
			Mode:             IMAPModeMurder,
		},
		LMTP: LMTPConfig{
			MaxMessageBytes: 64 << 20,
			MaxRecipients:   1000,
			MaxLineLength:   64 << 10,
			Timeout:         config.Duration(5 * time.Minute),
		},
		Dir:     DirectoryConfig{StaleAfter: config.Duration(10 * time.Second)},
		Servers: map[string]ServerAddrs{},
	}
}

// Validate reports the first inconsistent setting.
func (c *Config) Validate() error {
	switch c.Backend.Auth {
	case AuthPassthrough:
	case AuthProxy:
		if c.Authenticator == nil && c.Users.File == "" {
			return errors.New("gateway: backend.auth = proxy needs an authenticator (users.file)")
		}
	default:
		return fmt.Errorf("gateway: backend.auth %q: want %q or %q", c.Backend.Auth, AuthPassthrough, AuthProxy)
	}
	if (c.Backend.Auth == AuthProxy || c.Listen.LMTP != "") && c.Backend.AuthName == "" {
		return errors.New("gateway: backend.authname is required for proxy mode and for LMTP")
	}
	switch c.Backend.TLS {
	case BackendTLSNone, BackendTLSStartTLS, BackendTLSImplicit:
	default:
		return fmt.Errorf("gateway: backend.tls %q: want none, starttls or tls", c.Backend.TLS)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("gateway: tls.cert_file and tls.key_file go together")
	}
	if c.TLS.CertFile == "" && (c.TLS.Required || c.Listen.IMAPS != "" || c.Listen.POP3S != "") {
		return errors.New("gateway: tls.required, imaps and pop3s need tls.cert_file and tls.key_file")
	}
	switch c.IMAP.Mode {
	case IMAPModeMurder, IMAPModeRelay:
	default:
		return fmt.Errorf("gateway: imap.mode %q: want %q or %q", c.IMAP.Mode, IMAPModeMurder, IMAPModeRelay)
	}
	if c.Names.AltNamespace && (c.Names.UserPrefix == "" || c.Names.SharedPrefix == "") {
		return errors.New("gateway: names.altnamespace needs names.userprefix and names.sharedprefix")
	}
	sources := 0
	for _, set := range []bool{len(c.Dir.Endpoints) > 0, c.Dir.Mupdate != "", c.Dir.StaticFile != ""} {
		if set {
			sources++
		}
	}
	if sources > 1 {
		return errors.New("gateway: choose one of directory.endpoints, directory.mupdate and directory.static_file")
	}
	if c.Limits.MaxLine < 512 || c.Limits.MaxLiteral < 256 {
		return errors.New("gateway: limits.max_line must be >= 512 and limits.max_literal >= 256")
	}
	if c.Limits.MaxBadCommands < 1 {
		return errors.New("gateway: limits.max_bad_commands must be >= 1")
	}
	for name, s := range c.Servers {
		if name == "" {
			return errors.New("gateway: empty server name in [gateway.servers]")
		}
		if s.IMAP == "" && s.POP3 == "" && s.LMTP == "" {
			return fmt.Errorf("gateway: server %q has no address", name)
		}
	}
	return nil
}

// FileConfig is the layout of a gateway configuration file: everything
// under [gateway], so node and gateway settings can share one file.
type FileConfig struct {
	Gateway Config `toml:"gateway"`
}

// LoadConfig reads the TOML file named by -config (if any) over the
// defaults, then applies flags (-gateway.listen.imap=...), and validates.
func LoadConfig(name string, args []string, stderr io.Writer) (Config, error) {
	fc := FileConfig{Gateway: DefaultConfig()}
	if err := config.Load(name, args, &fc, stderr); err != nil {
		return Config{}, err
	}
	if err := fc.Gateway.Validate(); err != nil {
		return Config{}, err
	}
	return fc.Gateway, nil
}

// serverTLS builds the listeners' TLS configuration (nil without a
// certificate).
func (c *Config) serverTLS() (*tls.Config, error) {
	if c.TLS.CertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("gateway: loading TLS key pair: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// backendTLS builds the TLS client configuration for backends.
func (c *Config) backendTLS() (*tls.Config, error) {
	if c.Backend.TLS == BackendTLSNone || c.Backend.TLS == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.Backend.InsecureSkipVerify}
	if c.Backend.CAFile != "" {
		pem, err := os.ReadFile(c.Backend.CAFile)
		if err != nil {
			return nil, fmt.Errorf("gateway: reading backend.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("gateway: backend.ca_file %s holds no certificate", c.Backend.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}
