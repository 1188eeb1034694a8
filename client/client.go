// Package client is the Go client of a Rookery cluster's gRPC API. It
// keeps one connection per listed node and fails over between them: reads
// and watches go to any node, writes are forwarded to the leader by the
// node that receives them.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Config configures a Client.
type Config struct {
	// TLS enables TLS to every endpoint (set Certificates for mTLS); nil
	// means plaintext, fit only for loopback.
	TLS *tls.Config
	// Token is sent as "authorization: Bearer <token>" on every call: a
	// configured API token, or "user:password" for the users file.
	Token string
	// DialTimeout bounds establishing a connection to one endpoint.
	DialTimeout time.Duration
	// AttemptTimeout bounds one read attempt on one endpoint, so a hung
	// node (SIGSTOP, black-holed) costs at most this before the next
	// endpoint is tried. Writes are not given up on this way: a write
	// that timed out may still commit.
	AttemptTimeout time.Duration
	// Watch reconnect backoff.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// WatchProgressInterval is the progress interval asked of the server;
	// a stream silent for WatchStallTimeout is abandoned for another node.
	WatchProgressInterval time.Duration
	WatchStallTimeout     time.Duration
	// ListPageSize is the page size of the List calls the client makes for
	// full listings and watch resets.
	ListPageSize uint32
	Logger       *slog.Logger
	// DialOptions are appended to the client's own.
	DialOptions []grpc.DialOption
}

// DefaultConfig returns client defaults: 3 s connect, 5 s per read attempt,
// 1 s watch progress and 5 s stall detection.
func DefaultConfig() Config {
	return Config{
		DialTimeout:           3 * time.Second,
		AttemptTimeout:        5 * time.Second,
		BackoffBase:           50 * time.Millisecond,
		BackoffMax:            2 * time.Second,
		WatchProgressInterval: time.Second,
		WatchStallTimeout:     5 * time.Second,
		ListPageSize:          1000,
	}
}

func (c *Config) fillDefaults() {
	d := DefaultConfig()
	def := func(v *time.Duration, x time.Duration) {
		if *v <= 0 {
			*v = x
		}
	}
	def(&c.DialTimeout, d.DialTimeout)
	def(&c.AttemptTimeout, d.AttemptTimeout)
	def(&c.BackoffBase, d.BackoffBase)
	def(&c.BackoffMax, d.BackoffMax)
	def(&c.WatchProgressInterval, d.WatchProgressInterval)
	def(&c.WatchStallTimeout, d.WatchStallTimeout)
	if c.ListPageSize == 0 {
		c.ListPageSize = d.ListPageSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Client talks to a Rookery cluster through any of its endpoints. It is
// safe for concurrent use.
type Client struct {
	cfg Config
	eps []*endpoint
	// preferred is the index of the endpoint that last answered; calls
	// start there so a healthy node keeps the traffic.
	preferred atomic.Int64
}

type endpoint struct {
	addr string
	cc   *grpc.ClientConn
	dir  rookeryv1.DirectoryClient
	cl   rookeryv1.ClusterClient
}

// Dial prepares connections to every endpoint (host:port). Connections are
// made lazily, so Dial succeeds even while nodes are down.
func Dial(endpoints []string, cfg Config) (*Client, error) {
	cfg.fillDefaults()
	if len(endpoints) == 0 {
		return nil, errors.New("client: no endpoints")
	}
	c := &Client{cfg: cfg}
	for _, addr := range endpoints {
		addr = strings.TrimSpace(addr)
		if addr == "" {
			continue
		}
		cc, err := grpc.NewClient("passthrough:///"+addr, c.dialOptions()...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("client: endpoint %q: %w", addr, err)
		}
		c.eps = append(c.eps, &endpoint{
			addr: addr,
			cc:   cc,
			dir:  rookeryv1.NewDirectoryClient(cc),
			cl:   rookeryv1.NewClusterClient(cc),
		})
	}
	if len(c.eps) == 0 {
		return nil, errors.New("client: no endpoints")
	}
	return c, nil
}

// Flow-control windows of each connection, fixed rather than probed
// (dialOptions): how much a stream, and all streams of a connection, may
// have in flight unread.
const (
	streamWindow = 2 << 20
	connWindow   = 8 << 20
)

func (c *Client) dialOptions() []grpc.DialOption {
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if c.cfg.TLS != nil {
		creds = credentials.NewTLS(c.cfg.TLS)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: c.cfg.DialTimeout,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
		// Fixed windows turn off gRPC's bandwidth probe, which answers
		// nearly every message received with a PING the server must
		// acknowledge: a wake-up of the node per answer and per watched
		// batch. 2 MiB in flight per stream still carries a Watch at
		// 20 MB/s over a 100 ms round trip.
		grpc.WithStaticStreamWindowSize(streamWindow),
		grpc.WithStaticConnWindowSize(connWindow),
	}
	if c.cfg.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: c.cfg.Token, tls: c.cfg.TLS != nil}))
	}
	return append(opts, c.cfg.DialOptions...)
}

// Close closes every connection.
func (c *Client) Close() error {
	var errs []error
	for _, ep := range c.eps {
		errs = append(errs, ep.cc.Close())
	}
	return errors.Join(errs...)
}

// Endpoints returns the endpoint addresses in the order given to Dial.
func (c *Client) Endpoints() []string {
	out := make([]string, len(c.eps))
	for i, ep := range c.eps {
		out[i] = ep.addr
	}
	return out
}

// bearer sends the token. Plaintext is allowed because a loopback test
// cluster runs without TLS; production configs set Config.TLS.
type bearer struct {
	token string
	tls   bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}
func (b bearer) RequireTransportSecurity() bool { return false }

// callKind says how a failed attempt may be retried on another endpoint.
type callKind int

const (
	// read: safe to repeat anywhere; a hung node is abandoned after
	// AttemptTimeout.
	read callKind = iota
	// write: repeated on another node only after UNAVAILABLE (no leader,
	// no quorum, node down). Such a failure may hide a commit, so a
	// repeated Deactivate or Delete can answer FAILED_PRECONDITION or
	// NOT_FOUND for its own earlier success; the error then says so.
	write
	// readLong: a read that may take long (listings, snapshots); retried
	// like read, but with no per-attempt bound (the caller bounds pieces).
	readLong
)

// retryPause is the wait before do's second round over the endpoints.
const retryPause = 100 * time.Millisecond

// do runs fn against each endpoint in turn, starting with the preferred
// one, until one answers or the failure is not about availability. When
// every endpoint was unavailable it makes one more round, after resetting
// the connections' reconnect backoff and a short pause: a node restarted
// during the backoff of a connection that failed while it was down would
// otherwise be reported unavailable for up to a second after it is back.
func (c *Client) do(ctx context.Context, kind callKind, fn func(ctx context.Context, ep *endpoint) error) error {
	err := c.round(ctx, kind, fn, false)
	var unavailable *UnavailableError
	if !errors.As(err, &unavailable) {
		return err
	}
	for _, ep := range c.eps {
		ep.cc.ResetConnectBackoff()
	}
	select {
	case <-ctx.Done():
		return err
	case <-time.After(retryPause):
	}
	return c.round(ctx, kind, fn, kind == write)
}

// round is one pass of do over the endpoints. ambiguous says an earlier
// write attempt failed as unavailable and may have been applied.
func (c *Client) round(ctx context.Context, kind callKind, fn func(ctx context.Context, ep *endpoint) error, ambiguous bool) error {
	n := len(c.eps)
	start := int(c.preferred.Load())
	var errs []string
	for i := 0; i < n; i++ {
		idx := (start + i) % n
		ep := c.eps[idx]
		actx, cancel := ctx, context.CancelFunc(func() {})
		if kind == read {
			actx, cancel = context.WithTimeout(ctx, c.cfg.AttemptTimeout)
		}
		err := fn(actx, ep)
		cancel()
		if err == nil {
			c.preferred.Store(int64(idx))
			return nil
		}
		if ctx.Err() != nil {
			return &EndpointError{Endpoint: ep.addr, Err: err}
		}
		if !retryable(kind, err) {
			e := &EndpointError{Endpoint: ep.addr, Err: err}
			if ambiguous && (status.Code(err) == codes.NotFound || status.Code(err) == codes.FailedPrecondition) {
				e.Note = "an earlier attempt failed as unavailable and may have been applied"
			}
			return e
		}
		if kind == write {
			ambiguous = true
		}
		errs = append(errs, fmt.Sprintf("%s: %s", ep.addr, describe(err)))
		c.cfg.Logger.Debug("endpoint failed, trying next", "endpoint", ep.addr, "err", err)
	}
	return &UnavailableError{Attempts: errs}
}

func retryable(kind callKind, err error) bool {
	switch status.Code(err) {
	case codes.Unavailable:
		return true
	case codes.DeadlineExceeded:
		return kind == read || kind == readLong
	}
	return false
}

// describe shortens a gRPC error for a one-line summary.
func describe(err error) string {
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}
	return err.Error()
}

// EndpointError is a failure answered by (or on the way to) one endpoint.
// It unwraps to the gRPC status error, so status.Code works on it.
type EndpointError struct {
	Endpoint string
	Err      error
	// Note explains a result that an earlier failed attempt may have
	// caused (see callKind write).
	Note string
}

func (e *EndpointError) Error() string {
	if e.Note != "" {
		return fmt.Sprintf("%s: %v (%s)", e.Endpoint, e.Err, e.Note)
	}
	return fmt.Sprintf("%s: %v", e.Endpoint, e.Err)
}

func (e *EndpointError) Unwrap() error { return e.Err }

// UnavailableError says that no endpoint could serve a call. It carries the
// UNAVAILABLE code so status.Code and IsUnavailable recognise it.
type UnavailableError struct {
	Attempts []string // one line per endpoint tried
}

func (e *UnavailableError) Error() string {
	return "no endpoint could serve the request: " + strings.Join(e.Attempts, "; ")
}

// GRPCStatus makes the error an UNAVAILABLE status for status.Code.
func (e *UnavailableError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, e.Error())
}

// IsUnavailable reports whether err means the cluster or the endpoints
// could not be reached or had no quorum (worth retrying later).
func IsUnavailable(err error) bool {
	c := status.Code(err)
	return c == codes.Unavailable || c == codes.DeadlineExceeded
}

// IsNotFound reports whether err means the mailbox does not exist.
func IsNotFound(err error) bool { return status.Code(err) == codes.NotFound }
