package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/auth"
)

// PeerTokenMetadata is the metadata key that carries the cluster shared
// secret on node-to-node (Peer service) calls. See PeerCredentials.
const PeerTokenMetadata = "rookery-peer-token"

// Identity is the authenticated caller of an RPC.
type Identity struct {
	// Name is the identity that lands in reserved_by and in audit logs.
	Name string
	// Via says how it was proven: "mtls", "token", "password", "peer".
	Via string
	// Peer is set for another cluster node (Peer service access).
	Peer bool
	// Writer may write and manage the cluster.
	Writer bool
	// Server, when set, restricts writes to locations on that Cyrus
	// server (a backend identity may only change its own mailboxes).
	Server string
}

type identityKey struct{}

// IdentityFromContext returns the identity the auth interceptor attached.
func IdentityFromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// Authenticator checks passwords and knows every identity's role: the
// same users file and writer/reader lists the MUPDATE listener uses
// (*auth.Authenticator). Its roles also apply to identities proven by a
// token or a client certificate.
type Authenticator interface {
	Authenticate(ctx context.Context, authzid, username, password string) (auth.Identity, error)
	Identity(name string) auth.Identity
}

// Token is a bearer token accepted for an identity. Only the SHA-256 of the
// secret is configured, so a leaked config file does not leak the token.
type Token struct {
	Identity string
	SHA256   string // hex
}

// HashToken returns the hex SHA-256 to put in Token.SHA256 for a secret.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// access is what an RPC requires from its caller.
type access int

const (
	accessOpen  access = iota // health checks
	accessRead                // directory and cluster reads
	accessWrite               // directory writes
	accessAdmin               // membership, leadership, snapshots
	accessPeer                // node-to-node
)

// methodAccess classifies every RPC; an unknown method needs admin rights
// so that a newly added RPC is closed until someone classifies it.
func methodAccess(fullMethod string) access {
	svc, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	switch svc {
	case "grpc.health.v1.Health":
		return accessOpen
	case "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection":
		return accessRead
	case "rookery.v1.Peer":
		return accessPeer
	case "rookery.v1.Directory":
		switch method {
		case "Get", "List", "Watch", "WaitRevision", "ListReservations":
			return accessRead
		case "Reserve", "Activate", "Deactivate", "Delete", "Release", "Batch":
			return accessWrite
		}
	case "rookery.v1.Cluster":
		switch method {
		case "Status", "Members":
			return accessRead
		}
	}
	return accessAdmin
}

// authenticator proves identities and decides access. It is built once
// from Config and is read-only afterwards.
type authenticator struct {
	enabled   bool
	openReads bool
	tokens    map[string]string // sha256 hex -> identity
	users     Authenticator
	peerHash  []byte // sha256 of the shared peer secret
	peerRoots *x509.CertPool
	log       *slog.Logger
}

func newAuthenticator(cfg Config, peerRoots *x509.CertPool, log *slog.Logger) (*authenticator, error) {
	a := &authenticator{
		openReads: cfg.OpenReads,
		tokens:    map[string]string{},
		users:     cfg.Auth,
		peerRoots: peerRoots,
		log:       log,
	}
	for i, t := range cfg.Tokens {
		h := strings.ToLower(strings.TrimSpace(t.SHA256))
		if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("api: tokens[%d] (identity %q): SHA256 is not 64 hex digits", i, t.Identity)
		}
		if t.Identity == "" {
			return nil, fmt.Errorf("api: tokens[%d]: empty identity", i)
		}
		a.tokens[h] = t.Identity
	}
	if cfg.PeerSecret != "" {
		sum := sha256.Sum256([]byte(cfg.PeerSecret))
		a.peerHash = sum[:]
	}
	a.enabled = len(a.tokens) > 0 || a.users != nil || cfg.TLS.ClientCAFile != ""
	if a.enabled && a.users == nil && len(a.tokens) > 0 {
		log.Warn("grpc API has tokens but no Authenticator: every token identity may write")
	}
	if a.enabled && a.peerHash == nil && a.peerRoots == nil && !cfg.InsecurePeers {
		return nil, errors.New("api: authentication is on but Peer RPCs would be open: set PeerSecret or PeerCAFile (or InsecurePeers to accept that)")
	}
	return a, nil
}

// authenticate returns the caller's identity, the zero Identity for an
// anonymous caller, or UNAUTHENTICATED when presented credentials are wrong
// (a wrong password is never silently downgraded to anonymous).
func (a *authenticator) authenticate(ctx context.Context) (Identity, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if tok := first(md, PeerTokenMetadata); tok != "" {
		sum := sha256.Sum256([]byte(tok))
		if a.peerHash != nil && subtle.ConstantTimeCompare(sum[:], a.peerHash) == 1 {
			return Identity{Name: "peer", Via: "peer", Peer: true}, nil
		}
		return Identity{}, status.Error(codes.Unauthenticated, "invalid peer token")
	}
	if authz := first(md, "authorization"); authz != "" {
		return a.credential(ctx, authz)
	}
	// A bearer credential, when sent, wins over the client certificate:
	// a tool on a node's host may hold the node's certificate but act as
	// an operator.
	if chain := verifiedChain(ctx); chain != nil {
		id := a.withRole(Identity{Name: certName(chain[0]), Via: "mtls"})
		id.Peer = a.isPeerCert(chain)
		if id.Name != "" {
			return id, nil
		}
	}
	return Identity{}, nil
}

// isPeerCert reports whether a verified client chain also verifies against
// the peer CA: the certificate of another node.
func (a *authenticator) isPeerCert(chain []*x509.Certificate) bool {
	if a.peerRoots == nil {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: a.peerRoots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err == nil
}

// credential checks an "authorization" header: "Bearer <token>" against the
// configured token hashes, then "Bearer user:password" and
// "Basic base64(user:password)" against the users file.
func (a *authenticator) credential(ctx context.Context, authz string) (Identity, error) {
	scheme, cred, _ := strings.Cut(authz, " ")
	cred = strings.TrimSpace(cred)
	switch strings.ToLower(scheme) {
	case "bearer":
		if name, ok := a.tokens[HashToken(cred)]; ok {
			return a.withRole(Identity{Name: name, Via: "token"}), nil
		}
		if user, pass, ok := strings.Cut(cred, ":"); ok && a.users != nil {
			return a.password(ctx, user, pass)
		}
		return Identity{}, status.Error(codes.Unauthenticated, "invalid bearer token")
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(cred)
		user, pass, ok := strings.Cut(string(raw), ":")
		if err != nil || !ok {
			return Identity{}, status.Error(codes.Unauthenticated, "malformed basic credentials")
		}
		if a.users == nil {
			return Identity{}, status.Error(codes.Unauthenticated, "password authentication is not configured")
		}
		return a.password(ctx, user, pass)
	}
	return Identity{}, status.Errorf(codes.Unauthenticated, "unsupported authorization scheme %q (use Bearer)", scheme)
}

func (a *authenticator) password(ctx context.Context, user, pass string) (Identity, error) {
	if user == "" {
		return Identity{}, status.Error(codes.Unauthenticated, "empty user name")
	}
	remote := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		remote = p.Addr.String()
	}
	// The source address feeds the failed-login back-off and the fair
	// bcrypt queue shared with MUPDATE.
	id, err := a.users.Authenticate(auth.WithSource(ctx, remote), "", user, pass)
	switch {
	case errors.Is(err, auth.ErrNoRole):
		return Identity{}, status.Errorf(codes.PermissionDenied, "identity %q has no role (neither writer nor reader)", user)
	case errors.Is(err, auth.ErrThrottled), errors.Is(err, auth.ErrBusy):
		a.log.Warn("grpc authentication throttled", "user", user, "remote", remote, "err", err)
		return Identity{}, status.Error(codes.ResourceExhausted, "too many failed logins; try again later")
	case err != nil:
		a.log.Info("grpc authentication failed", "user", user, "remote", remote)
		return Identity{}, status.Error(codes.Unauthenticated, "invalid user name or password")
	}
	return Identity{Name: id.Name, Via: "password", Writer: id.CanWrite(), Server: id.Server}, nil
}

// withRole fills in the role of an identity proven without a password.
// Without an Authenticator there are no role lists, and every
// authenticated identity may write.
func (a *authenticator) withRole(id Identity) Identity {
	if a.users == nil {
		id.Writer = true
		return id
	}
	ai := a.users.Identity(id.Name)
	id.Writer = ai.CanWrite()
	id.Server = ai.Server
	return id
}

// hasRole reports whether an identity may read at all.
func (a *authenticator) hasRole(id Identity) bool {
	return a.users == nil || id.Writer || a.users.Identity(id.Name).Role != auth.RoleNone
}

// authorize decides whether id may make a call of the given class.
func (a *authenticator) authorize(class access, id Identity) error {
	if !a.enabled || class == accessOpen {
		return nil
	}
	switch class {
	case accessRead:
		if a.openReads || id.Peer {
			return nil
		}
		if id.Name == "" {
			return status.Error(codes.Unauthenticated, "reads require authentication: send a bearer token or a client certificate")
		}
		if !a.hasRole(id) {
			return status.Errorf(codes.PermissionDenied, "identity %q has no role (neither writer nor reader)", id.Name)
		}
		return nil
	case accessPeer:
		if id.Peer || (a.peerHash == nil && a.peerRoots == nil) {
			return nil
		}
		return status.Error(codes.PermissionDenied, "peer RPCs require the cluster peer credential")
	}
	if id.Name == "" {
		return status.Error(codes.Unauthenticated, "writes and cluster operations require authentication: send a bearer token or a client certificate")
	}
	if !id.Writer {
		return status.Errorf(codes.PermissionDenied, "identity %q may not write or manage the cluster (not a writer)", id.Name)
	}
	if class == accessAdmin && id.Server != "" {
		return status.Errorf(codes.PermissionDenied, "identity %q is bound to server %q and may not manage the cluster", id.Name, id.Server)
	}
	return nil
}

func (a *authenticator) check(ctx context.Context, fullMethod string) (context.Context, error) {
	class := methodAccess(fullMethod)
	if class == accessOpen {
		return ctx, nil
	}
	id, err := a.authenticate(ctx)
	if err != nil {
		return ctx, err
	}
	if err := a.authorize(class, id); err != nil {
		a.log.Info("grpc call denied", "method", fullMethod, "identity", id.Name, "code", status.Code(err).String())
		return ctx, err
	}
	if id.Name != "" {
		ctx = context.WithValue(ctx, identityKey{}, id)
	}
	return ctx, nil
}

// UnaryInterceptor authenticates and authorizes unary calls.
func (a *authenticator) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := a.check(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// StreamInterceptor authenticates and authorizes streaming calls.
func (a *authenticator) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := a.check(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &identityStream{ServerStream: ss, ctx: ctx})
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identityStream) Context() context.Context { return s.ctx }

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// verifiedChain returns the client certificate chain (leaf first) when the
// TLS handshake verified it against the configured client CAs.
func verifiedChain(ctx context.Context) []*x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return ti.State.VerifiedChains[0]
}

// certName maps a client certificate to an identity: the subject common
// name, else the first DNS name, e-mail address or URI in the SAN.
func certName(c *x509.Certificate) string {
	switch {
	case c.Subject.CommonName != "":
		return c.Subject.CommonName
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.EmailAddresses) > 0:
		return c.EmailAddresses[0]
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	}
	return ""
}

// PeerCredentials returns per-RPC credentials that present the cluster
// shared secret on node-to-node calls; the cluster package adds them to the
// dial options it uses for the Peer service.
func PeerCredentials(secret string, requireTLS bool) credentials.PerRPCCredentials {
	return peerCreds{secret: secret, tls: requireTLS}
}

type peerCreds struct {
	secret string
	tls    bool
}

func (p peerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{PeerTokenMetadata: p.secret}, nil
}
func (p peerCreds) RequireTransportSecurity() bool { return p.tls }
