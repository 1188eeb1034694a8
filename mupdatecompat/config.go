package mupdatecompat

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	wire "github.com/rookery/rookery/internal/imapwire"
)

// Order is the order of LIST and UPDATE output. Cyrus clients merge-join
// that output with their own mailboxes.db, so it must match the client's
// version (docs/mupdate.md §9, cyrus-imapd #4946).
type Order uint8

const (
	// OrderDBName is Cyrus ≥3.6 mailboxes.db order (fsm.Compare), the
	// order of the directory's own scans.
	OrderDBName Order = iota
	// OrderBytewise is Cyrus ≤3.4 order: bytewise on internal names
	// (improved_mboxlist_sort off). The output is sorted per request, so
	// it costs memory proportional to the result.
	OrderBytewise
)

func (o Order) String() string {
	switch o {
	case OrderDBName:
		return "dbname"
	case OrderBytewise:
		return "bytewise"
	}
	return fmt.Sprintf("Order(%d)", uint8(o))
}

// Profile adapts the output to one kind of Cyrus client.
type Profile struct {
	Order Order
	// QuoteStrings sends names, locations and ACLs as quoted strings when
	// safe instead of {N+} literals. Cyrus 3.4.8, 3.6.5 and 3.8.3 need it
	// (cyrus-imapd #4932); every other version reads both.
	QuoteStrings bool
}

// Config configures a Server. Start from DefaultConfig.
type Config struct {
	// ServerName, Implementation and Version fill the banner line
	// `* OK MUPDATE "<ServerName>" "<Implementation>" "<Version>" "(master)"`.
	// Cyrus clients do not interpret them.
	ServerName     string
	Implementation string
	Version        string

	// Mechanisms are the SASL mechanisms offered, in banner order. PLAIN
	// and LOGIN are supported.
	Mechanisms []string

	// TLSConfig enables STARTTLS on Serve listeners and is required by
	// ServeTLS (implicit TLS, Cyrus `mupdate_server: host:port/tls`).
	TLSConfig *tls.Config
	// RequireTLSForAuth offers no mechanism and refuses AUTHENTICATE until
	// the connection is encrypted. Cyrus clients then use STARTTLS on their
	// own (they fall back to it when no mechanism is usable in the clear).
	RequireTLSForAuth bool
	// Compress advertises and accepts COMPRESS DEFLATE (after login only:
	// each compressed connection costs about 1 MiB of deflate state).
	Compress bool

	// MaxConnections bounds open connections; beyond it a client gets
	// `* BYE "Server Unable"` and is closed, as Cyrus does.
	MaxConnections int
	// IdleTimeout closes a connection from which no complete command
	// arrived for this long. Streaming slaves send NOOP every 20 s.
	IdleTimeout time.Duration
	// WriteTimeout closes a connection that does not take its output for
	// this long, so a stuck slave cannot hold its stream forever.
	WriteTimeout time.Duration
	// HandshakeTimeout bounds a TLS handshake.
	HandshakeTimeout time.Duration
	// CommandTimeout bounds one directory call (a write, or the
	// linearizable barrier before FIND, LIST and UPDATE). Cyrus backends
	// have no read timeout, so the answer must come, NO if need be.
	CommandTimeout time.Duration
	// BarrierTimeout bounds the barrier of NOOP on an UPDATE stream. When
	// it cannot be proven in time the connection is closed, so that the
	// Cyrus slave reconnects, possibly to another node.
	BarrierTimeout time.Duration
	// FailedAuthDelay is waited before answering a failed login.
	FailedAuthDelay time.Duration
	// StreamBatch is the number of events read from the history per step
	// of an UPDATE stream.
	StreamBatch int

	// Limits bound what an authenticated client can make a connection
	// buffer; PreAuthLimits apply before login.
	Limits        wire.Limits
	PreAuthLimits wire.Limits

	// DefaultProfile applies to identities without an entry in Profiles.
	DefaultProfile Profile
	Profiles       map[string]Profile

	// Login protection (see preauth.go).
	//
	// PreAuthTimeout closes a connection that has not logged in this long
	// after it was accepted (`* BYE "Login timeout"`). Zero disables it.
	PreAuthTimeout time.Duration
	// MaxPreAuthPerSource bounds the connections one source address may
	// hold open without logging in. Zero disables it.
	MaxPreAuthPerSource int
	// PreAuthGrace is how long a new connection is safe from being
	// replaced at a cap before it logs in.
	PreAuthGrace time.Duration

	// ObserveCommand, when set, is called after every command with its
	// name (upper case, "UNKNOWN" for names not in the protocol), its
	// result ("ok", "no", "bad" or "bye") and how long it took. See metrics.go.
	ObserveCommand func(command, result string, d time.Duration)
}

// DefaultConfig returns Cyrus-compatible defaults.
func DefaultConfig() Config {
	return Config{
		ServerName:       "rookery",
		Implementation:   "Cyrus IMAP",
		Version:          "rookery",
		Mechanisms:       []string{"PLAIN", "LOGIN"},
		Compress:         true,
		MaxConnections:   1024,
		IdleTimeout:      30 * time.Minute,
		WriteTimeout:     time.Minute,
		HandshakeTimeout: 30 * time.Second,
		CommandTimeout:   10 * time.Second,
		BarrierTimeout:   5 * time.Second,
		FailedAuthDelay:  time.Second,
		StreamBatch:      1024,
		Limits:           wire.DefaultLimits(),
		PreAuthLimits: wire.Limits{
			MaxLineLength:  32 << 10, // a SASL line may reach 21848 bytes
			MaxLiteralSize: 32 << 10,
			MaxCommandSize: 64 << 10,
			MaxArgs:        4,
		},

		PreAuthTimeout:      30 * time.Second,
		MaxPreAuthPerSource: 256,
		PreAuthGrace:        200 * time.Millisecond,
	}
}

// validate checks what would otherwise break the wire format or hang.
func (c *Config) validate() error {
	for _, s := range []string{c.ServerName, c.Implementation, c.Version} {
		if strings.ContainsAny(s, "\r\n\x00") {
			return fmt.Errorf("mupdatecompat: banner field %q holds a line break or NUL", s)
		}
	}
	for _, m := range c.Mechanisms {
		switch strings.ToUpper(m) {
		case "PLAIN", "LOGIN":
		default:
			return fmt.Errorf("mupdatecompat: unsupported SASL mechanism %q", m)
		}
	}
	if c.MaxConnections <= 0 || c.IdleTimeout <= 0 || c.WriteTimeout <= 0 || c.HandshakeTimeout <= 0 ||
		c.CommandTimeout <= 0 || c.BarrierTimeout <= 0 || c.StreamBatch <= 0 || c.FailedAuthDelay < 0 ||
		c.PreAuthTimeout < 0 || c.MaxPreAuthPerSource < 0 || c.PreAuthGrace < 0 {
		return fmt.Errorf("mupdatecompat: limits and timeouts must be positive")
	}
	return nil
}

// profile returns the output profile of an identity.
func (c *Config) profile(identity string) Profile {
	if p, ok := c.Profiles[identity]; ok {
		return p
	}
	return c.DefaultProfile
}
