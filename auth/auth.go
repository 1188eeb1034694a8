package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Role is what an identity may do.
type Role uint8

const (
	// RoleNone: not allowed to log in, even with a correct password.
	RoleNone Role = iota
	// RoleReader: FIND, LIST, UPDATE and NOOP (frontend slaves, tools).
	RoleReader
	// RoleWriter: everything, including RESERVE, ACTIVATE, DEACTIVATE and
	// DELETE (Cyrus backends; Cyrus calls them "admins").
	RoleWriter
)

func (r Role) String() string {
	switch r {
	case RoleNone:
		return "none"
	case RoleReader:
		return "reader"
	case RoleWriter:
		return "writer"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// Identity is an authenticated identity and what it may do.
type Identity struct {
	Name string
	Role Role
	// Server, when set, binds the identity's writes to that Cyrus server:
	// the front ends stamp it on every command as fsm.Command.Bound and the
	// state machine enforces it on the committed entry (fsm authorize).
	Server string
}

// CanWrite reports whether the identity may issue directory writes at all.
func (id Identity) CanWrite() bool { return id.Role == RoleWriter }

var (
	// ErrBadCredentials: unknown user or wrong password. Callers must not
	// tell the two apart to the client.
	ErrBadCredentials = errors.New("auth: authentication failure")
	// ErrNoRole: the password is right but the identity is neither a
	// writer nor a reader.
	ErrNoRole = errors.New("auth: identity may not log in")
	// ErrProxyDenied: an authorization identity different from the
	// authentication identity was asked for by an identity not listed in
	// Config.Proxies, or names an identity with more rights than the proxy
	// or without a role.
	ErrProxyDenied = errors.New("auth: proxy authorization denied")
)

// Config sets roles and the verification cache.
type Config struct {
	// Writers may do everything (Cyrus backends, ctl_mboxlist, admins).
	Writers []string
	// Readers may only read and stream (frontend mupdate slaves, tools).
	Readers []string
	// Servers maps an identity to the Cyrus servername it writes for; see
	// Identity.Server. Identities not listed may write anywhere.
	Servers map[string]string
	// Proxies may log in as another identity (a SASL authzid different
	// from the authcid), as Cyrus's proxyservers may. Empty by default: a
	// login acts as the identity that proved its password. Even a listed
	// proxy only gets identities with no more rights than its own.
	Proxies []string
	// CacheTTL is how long a successful password verification is
	// remembered. Zero disables the cache (every login costs a bcrypt).
	CacheTTL time.Duration
	// CacheSize bounds the number of remembered verifications.
	CacheSize int
	// MaxConcurrentHashes bounds the bcrypt verifications running at once,
	// so a flood of wrong passwords cannot take every CPU. Waiting callers
	// give up when their context ends; they are served clean identities
	// first, round-robin over source addresses (see LimitsConfig).
	MaxConcurrentHashes int
	// Limits throttle failed logins per identity and per source address.
	Limits LimitsConfig
}

// DefaultConfig returns a five-minute cache of up to 10000 verifications
// and one bcrypt per CPU at a time. Roles are empty: nobody may log in
// until Writers or Readers are set.
func DefaultConfig() Config {
	return Config{
		CacheTTL:            5 * time.Minute,
		CacheSize:           10000,
		MaxConcurrentHashes: runtime.GOMAXPROCS(0),
		Limits:              DefaultLimits(),
	}
}

// Authenticator verifies passwords against Users and assigns roles. It is
// safe for concurrent use.
type Authenticator struct {
	cfg     Config
	roles   map[string]Role
	proxies map[string]bool
	users   atomic.Pointer[Users]
	sem     *fairSem
	cache   *verifyCache
	idents  *failureLimiter
	sources *failureLimiter
	known   *knownSources
	now     func() time.Time
	c       counters

	dummyOnce sync.Once
	dummyTime time.Duration // what one bcrypt comparison takes here
	hashes    atomic.Int64  // bcrypt comparisons run, for tests and stats
}

// New returns an Authenticator for users with the roles of cfg.
func New(cfg Config, users *Users) *Authenticator {
	d := DefaultConfig()
	if cfg.MaxConcurrentHashes <= 0 {
		cfg.MaxConcurrentHashes = d.MaxConcurrentHashes
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = d.CacheSize
	}
	l := cfg.Limits
	if l.MaxTracked <= 0 {
		l.MaxTracked = d.Limits.MaxTracked
	}
	if l.MinBackoff <= 0 {
		l.MinBackoff = d.Limits.MinBackoff
	}
	if l.KnownSourceTTL <= 0 {
		l.KnownSourceTTL = d.Limits.KnownSourceTTL
	}
	l.MaxBackoff = max(l.MaxBackoff, l.MinBackoff)
	a := &Authenticator{
		cfg:     cfg,
		roles:   map[string]Role{},
		proxies: map[string]bool{},
		sem:     newFairSem(cfg.MaxConcurrentHashes, l.MaxPendingPerSource),
		idents:  newFailureLimiter(l.IdentityFailures, l.IdentityWindow, l.MinBackoff, l.MaxBackoff, l.MaxTracked),
		sources: newFailureLimiter(l.SourceFailures, l.SourceWindow, l.MinBackoff, l.MaxBackoff, l.MaxTracked),
		known:   newKnownSources(l.KnownSourceTTL, l.MaxTracked),
		now:     time.Now,
	}
	for _, n := range cfg.Readers {
		a.roles[n] = RoleReader
	}
	for _, n := range cfg.Writers { // a name in both lists is a writer
		a.roles[n] = RoleWriter
	}
	for _, n := range cfg.Proxies {
		a.proxies[n] = true
	}
	if cfg.CacheTTL > 0 {
		a.cache = newVerifyCache(cfg.CacheSize, cfg.CacheTTL)
	}
	a.users.Store(users)
	return a
}

// SetUsers replaces the users (after the file changed). Remembered
// verifications of a user whose hash changed stop counting at once.
func (a *Authenticator) SetUsers(u *Users) { a.users.Store(u) }

// Identity returns the identity name with its role and server restriction,
// without checking any password.
func (a *Authenticator) Identity(name string) Identity {
	return Identity{Name: name, Role: a.roles[name], Server: a.cfg.Servers[name]}
}

// Authenticate checks username's password and returns the identity the
// session acts as: username itself, or authzid when it is set and differs.
// Acting as another identity is proxy authorization (Cyrus proxyservers):
// only identities in Config.Proxies may, and only as an identity with a
// role that has no more rights than the proxy's own (never a writer for a
// reader proxy, never an unbound or otherwise-bound writer for a proxy
// bound to a server). Anything else is ErrProxyDenied.
func (a *Authenticator) Authenticate(ctx context.Context, authzid, username, password string) (Identity, error) {
	if err := a.verify(ctx, username, password); err != nil {
		return Identity{}, err
	}
	id := a.Identity(username)
	if authzid != "" && authzid != username {
		target := a.Identity(authzid)
		if !a.proxies[username] || !id.covers(target) {
			a.c.proxyDenied.Add(1)
			return Identity{}, ErrProxyDenied
		}
		id = target
	}
	if id.Role == RoleNone {
		return Identity{}, ErrNoRole
	}
	return id, nil
}

// covers reports whether acting as target gains the proxy id no right: the
// target has a role no higher than the proxy's, and a writer target is
// bound to the proxy's server when the proxy is bound.
func (id Identity) covers(target Identity) bool {
	if target.Role == RoleNone || target.Role > id.Role {
		return false
	}
	return target.Role != RoleWriter || id.Server == "" || target.Server == id.Server
}

// Counters returns the refusals and checks so far.
func (a *Authenticator) Counters() Counters {
	return Counters{
		Failures:         a.c.failures.Load(),
		ThrottledIdent:   a.c.throttledIdent.Load(),
		ThrottledSource:  a.c.throttledSource.Load(),
		Busy:             a.c.busy.Load(),
		ProxyDenied:      a.c.proxyDenied.Load(),
		Hashes:           uint64(a.hashes.Load()),
		CacheHits:        a.c.cacheHits.Load(),
		BackoffsIdentity: a.c.backoffsIdent.Load(),
		BackoffsSource:   a.c.backoffsSource.Load(),
	}
}

// verify checks the password, from the cache when it can. Concurrent
// verifications of the same credentials share one bcrypt run: when many
// backends log in at once with a cold cache (after a restart), they wait
// for the first instead of queueing up for the CPU.
func (a *Authenticator) verify(ctx context.Context, username, password string) error {
	hash, known := a.users.Load().hash(username)
	if !known || a.cache == nil {
		return a.check(ctx, username, hash, known, password)
	}
	key := a.cache.key(username, password)
	call, leader, cached := a.cache.join(key, hash)
	if cached {
		a.c.cacheHits.Add(1)
		a.known.add(username, sourceFrom(ctx), a.now())
		return nil
	}
	if !leader {
		select {
		case <-call.done:
		case <-ctx.Done():
			return fmt.Errorf("auth: %w", ctx.Err())
		}
		if call.err == nil && call.hash == hash {
			a.known.add(username, sourceFrom(ctx), a.now())
			return nil
		}
		// The leader failed (or verified another hash): decide alone.
		return a.check(ctx, username, hash, known, password)
	}
	err := a.check(ctx, username, hash, known, password)
	if err == nil {
		a.cache.add(key, hash)
	}
	a.cache.leave(key, call, hash, err)
	return err
}

// check applies the failed-login limits around one password comparison
// and records its outcome against the identity and the source address.
func (a *Authenticator) check(ctx context.Context, username, hash string, known bool, password string) error {
	source, now := sourceFrom(ctx), a.now()
	knownSource := a.known.has(username, source, now)
	if !knownSource && a.idents.blocked(username, now) {
		a.c.throttledIdent.Add(1)
		return ErrThrottled
	}
	if source != "" && a.sources.blocked(source, now) {
		a.c.throttledSource.Add(1)
		return ErrThrottled
	}
	clean := knownSource || a.idents.clean(username, now)
	err := a.compare(ctx, source, clean, hash, known, password)
	switch {
	case err == nil:
		a.idents.succeed(username)
		a.known.add(username, source, a.now())
	case errors.Is(err, ErrBadCredentials):
		a.c.failures.Add(1)
		now = a.now()
		if a.idents.fail(username, now) {
			a.c.backoffsIdent.Add(1)
		}
		if source != "" && a.sources.fail(source, now) {
			a.c.backoffsSource.Add(1)
		}
	case errors.Is(err, ErrBusy):
		a.c.busy.Add(1)
	}
	return err
}

// compare runs one bcrypt comparison in a slot of the fair semaphore. An
// unknown user costs no CPU: the caller waits as long as a comparison
// takes, so that response times do not tell which names exist, and
// guesses at made-up names cannot crowd out real logins.
func (a *Authenticator) compare(ctx context.Context, source string, clean bool, hash string, known bool, password string) error {
	if !known {
		t := time.NewTimer(a.dummyDuration())
		defer t.Stop()
		select {
		case <-t.C:
			return ErrBadCredentials
		case <-ctx.Done():
			return fmt.Errorf("auth: %w", ctx.Err())
		}
	}
	if err := a.sem.acquire(ctx, source, clean); err != nil {
		if errors.Is(err, ErrBusy) {
			return err
		}
		return fmt.Errorf("auth: %w", err)
	}
	defer a.sem.release()
	a.hashes.Add(1)
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		return ErrBadCredentials
	}
	return nil
}

// dummyDuration measures once what a comparison at the default cost takes.
func (a *Authenticator) dummyDuration() time.Duration {
	a.dummyOnce.Do(func() {
		h, _ := bcrypt.GenerateFromPassword([]byte("rookery-dummy-password"), bcrypt.DefaultCost)
		start := time.Now()
		bcrypt.CompareHashAndPassword(h, []byte("rookery-other-password"))
		a.dummyTime = time.Since(start)
	})
	return a.dummyTime
}

// verifyCache remembers successful verifications. Keys are HMAC-SHA256
// of the credentials under a random per-process key: the cache holds no
// password, and its keys are useless outside this process. Each entry also
// holds the bcrypt hash it was verified against, so a password change
// invalidates it.
type verifyCache struct {
	secret []byte
	ttl    time.Duration
	size   int
	now    func() time.Time

	mu       sync.Mutex
	entries  map[[sha256.Size]byte]cacheEntry
	inflight map[[sha256.Size]byte]*verifyCall
}

// verifyCall is a bcrypt verification in progress that others wait for.
type verifyCall struct {
	done chan struct{}
	hash string
	err  error
}

// join reports a cached verification of k against hash, or returns the
// verification in progress for k, or registers a new one that the caller
// (the leader) must finish with leave. Cache and in-flight set are checked
// under one lock: a leader adds its result to the cache before it leaves,
// so a caller arriving in between finds one or the other, never neither.
func (c *verifyCache) join(k [sha256.Size]byte, hash string) (call *verifyCall, leader, cached bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.validLocked(k, hash) {
		return nil, false, true
	}
	if call, ok := c.inflight[k]; ok {
		return call, false, false
	}
	call = &verifyCall{done: make(chan struct{})}
	c.inflight[k] = call
	return call, true, false
}

func (c *verifyCache) leave(k [sha256.Size]byte, call *verifyCall, hash string, err error) {
	c.mu.Lock()
	delete(c.inflight, k)
	c.mu.Unlock()
	call.hash, call.err = hash, err
	close(call.done)
}

type cacheEntry struct {
	hash    string
	expires time.Time
}

func newVerifyCache(size int, ttl time.Duration) *verifyCache {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		panic("auth: no randomness: " + err.Error()) // crypto/rand never fails on supported platforms
	}
	return &verifyCache{
		secret: secret, ttl: ttl, size: size, now: time.Now,
		entries:  map[[sha256.Size]byte]cacheEntry{},
		inflight: map[[sha256.Size]byte]*verifyCall{},
	}
}

func (c *verifyCache) key(username, password string) [sha256.Size]byte {
	m := hmac.New(sha256.New, c.secret)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(username)))
	m.Write(n[:])
	m.Write([]byte(username))
	m.Write([]byte(password))
	var k [sha256.Size]byte
	m.Sum(k[:0])
	return k
}

// validLocked reports a live cache entry for k verified against hash.
func (c *verifyCache) validLocked(k [sha256.Size]byte, hash string) bool {
	e, ok := c.entries[k]
	if !ok {
		return false
	}
	if c.now().After(e.expires) {
		delete(c.entries, k)
		return false
	}
	return subtle.ConstantTimeCompare([]byte(e.hash), []byte(hash)) == 1
}

func (c *verifyCache) add(k [sha256.Size]byte, hash string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.size {
		c.evictLocked()
	}
	c.entries[k] = cacheEntry{hash: hash, expires: c.now().Add(c.ttl)}
}

// evictLocked makes room for one entry: it drops the expired entries among
// a few visited ones, or else one arbitrary entry (map order is random).
func (c *verifyCache) evictLocked() {
	now := c.now()
	visited, evicted := 0, false
	var victim [sha256.Size]byte
	for k, e := range c.entries {
		if now.After(e.expires) {
			delete(c.entries, k)
			evicted = true
		}
		victim = k
		if visited++; visited >= 16 {
			break
		}
	}
	if !evicted {
		delete(c.entries, victim)
	}
}

func (c *verifyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
