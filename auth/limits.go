package auth

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrThrottled: too many failed logins for this identity or from this
// source address recently; the password was not checked. Callers answer it
// as a temporary failure.
var ErrThrottled = errors.New("auth: too many failed logins, try again later")

// ErrBusy: the source address already has MaxPendingPerSource password
// checks waiting; the password was not checked.
var ErrBusy = errors.New("auth: too many password checks pending from this address")

// LimitsConfig bounds what failed logins may cost. A failure counts
// against both the identity and the source address; once either reaches
// its limit within its window, logins for it are refused without a
// password check (ErrThrottled) for a back-off that doubles on each
// further trip, up to MaxBackoff. A login that matches a remembered
// successful verification is never throttled: the cache proves the
// password without bcrypt, and it keeps the backends working while their
// identity or address is under attack. Nor is the identity's back-off
// applied to an address the identity logged in from within KnownSourceTTL:
// guesses from elsewhere cannot lock a backend out of its own identity
// when its cached login expires (the address's own back-off still applies).
type LimitsConfig struct {
	// IdentityFailures failed logins of one identity within
	// IdentityWindow trip its back-off. Zero disables the limit.
	IdentityFailures int
	IdentityWindow   time.Duration
	// SourceFailures failed logins from one address within SourceWindow
	// trip its back-off. Zero disables the limit.
	SourceFailures int
	SourceWindow   time.Duration
	// MinBackoff is the first back-off; MaxBackoff bounds the doubling.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// MaxPendingPerSource bounds password checks queued for the bcrypt
	// workers per source address (ErrBusy beyond).
	MaxPendingPerSource int
	// KnownSourceTTL is how long a successful login exempts its
	// (identity, address) pair from the identity's back-off (zero: the
	// default, 24 h).
	KnownSourceTTL time.Duration
	// MaxTracked bounds the identities, addresses and pairs remembered.
	MaxTracked int
}

// DefaultLimits: 10 failures a minute per identity, 30 a minute per
// address, back-off from 2 s to 5 min, 8 queued checks per address.
func DefaultLimits() LimitsConfig {
	return LimitsConfig{
		IdentityFailures:    10,
		IdentityWindow:      time.Minute,
		SourceFailures:      30,
		SourceWindow:        time.Minute,
		MinBackoff:          2 * time.Second,
		MaxBackoff:          5 * time.Minute,
		MaxPendingPerSource: 8,
		KnownSourceTTL:      24 * time.Hour,
		MaxTracked:          100_000,
	}
}

// Counters are the refusals and checks of an Authenticator since it was
// created, for metrics.
type Counters struct {
	Failures         uint64 // wrong password, unknown user
	ThrottledIdent   uint64 // refused: identity in back-off
	ThrottledSource  uint64 // refused: source address in back-off
	Busy             uint64 // refused: source's bcrypt queue full
	ProxyDenied      uint64 // refused: authzid not allowed
	Hashes           uint64 // bcrypt comparisons run
	CacheHits        uint64 // logins verified from the cache
	BackoffsIdentity uint64 // identity back-offs started
	BackoffsSource   uint64 // source back-offs started
}

type counters struct {
	failures, throttledIdent, throttledSource, busy, proxyDenied atomic.Uint64
	cacheHits, backoffsIdent, backoffsSource                     atomic.Uint64
}

type sourceKey struct{}

// WithSource returns ctx carrying the network address a login comes from
// ("ip:port" or a bare IP); Authenticate applies the per-source limits
// and queue fairness to its IP.
func WithSource(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, sourceKey{}, sourceIP(addr))
}

func sourceFrom(ctx context.Context) string {
	s, _ := ctx.Value(sourceKey{}).(string)
	return s
}

// sourceIP strips the port: limits apply per address, not per connection.
func sourceIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// failureLimiter counts failures per key in fixed windows and keeps a
// back-off per key.
type failureLimiter struct {
	limit      int
	window     time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	max        int

	mu sync.Mutex
	m  map[string]*failState
}

type failState struct {
	windowStart  time.Time
	failures     int
	backoff      time.Duration
	blockedUntil time.Time
	last         time.Time
}

func newFailureLimiter(limit int, window, minB, maxB time.Duration, max int) *failureLimiter {
	return &failureLimiter{limit: limit, window: window, minBackoff: minB, maxBackoff: maxB, max: max, m: map[string]*failState{}}
}

// blocked reports whether key is in back-off at now.
func (l *failureLimiter) blocked(key string, now time.Time) bool {
	if l.limit <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.m[key]
	return ok && now.Before(s.blockedUntil)
}

// clean reports whether key has no failure in its current window and no
// back-off running: its checks go first.
func (l *failureLimiter) clean(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.m[key]
	return !ok || (now.Sub(s.windowStart) > l.window && !now.Before(s.blockedUntil))
}

// fail records a failure; it reports whether a back-off started.
func (l *failureLimiter) fail(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.m[key]
	if !ok {
		if len(l.m) >= l.max {
			l.evictLocked(now)
		}
		s = &failState{windowStart: now}
		l.m[key] = s
	}
	// A key quiet for a long while starts again from the first back-off.
	if now.Sub(s.last) > 2*l.maxBackoff {
		s.backoff = 0
	}
	s.last = now
	if now.Sub(s.windowStart) > l.window {
		s.windowStart, s.failures = now, 0
	}
	s.failures++
	if l.limit <= 0 || s.failures < l.limit {
		return false
	}
	s.backoff = min(max(2*s.backoff, l.minBackoff), l.maxBackoff)
	s.blockedUntil = now.Add(s.backoff)
	s.windowStart, s.failures = now, 0
	return true
}

// succeed forgets the failures of key.
func (l *failureLimiter) succeed(key string) {
	l.mu.Lock()
	delete(l.m, key)
	l.mu.Unlock()
}

// evictLocked drops keys with nothing running, or else one arbitrary key,
// so that spraying addresses or names cannot grow the map without bound.
func (l *failureLimiter) evictLocked(now time.Time) {
	visited := 0
	for k, s := range l.m {
		if !now.Before(s.blockedUntil) && now.Sub(s.windowStart) > l.window {
			delete(l.m, k)
		}
		if visited++; visited >= 64 {
			break
		}
	}
	for k := range l.m {
		if len(l.m) < l.max {
			break
		}
		delete(l.m, k)
	}
}

// knownSources remembers (identity, address) pairs that logged in.
type knownSources struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	m  map[string]time.Time // identity NUL address -> expiry
}

func newKnownSources(ttl time.Duration, max int) *knownSources {
	return &knownSources{ttl: ttl, max: max, m: map[string]time.Time{}}
}

func (k *knownSources) add(identity, source string, now time.Time) {
	if source == "" || k.ttl <= 0 {
		return
	}
	key := identity + "\x00" + source
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.m[key]; !ok && len(k.m) >= k.max {
		for x, exp := range k.m { // expired ones first, else any
			if now.After(exp) || len(k.m) >= k.max {
				delete(k.m, x)
			}
			if len(k.m) < k.max {
				break
			}
		}
	}
	k.m[key] = now.Add(k.ttl)
}

func (k *knownSources) has(identity, source string, now time.Time) bool {
	if source == "" {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	exp, ok := k.m[identity+"\x00"+source]
	return ok && now.Before(exp)
}

// fairSem hands out the bcrypt slots: checks of clean identities (no recent
// failure) before the others, and within each class round-robin over the
// source addresses, so that a flood of guesses from some addresses neither
// takes every slot nor delays a first login from elsewhere by more than a
// round.
type fairSem struct {
	maxPending int

	mu      sync.Mutex
	free    int
	classes [2]fairQueue // 0: clean identities, 1: the rest
	pending map[string]int
}

type fairQueue struct {
	bySource map[string][]*semWaiter
	ring     []string // sources with waiters, in service order
	next     int
}

type semWaiter struct {
	ch      chan struct{}
	granted bool
}

func newFairSem(slots, maxPending int) *fairSem {
	s := &fairSem{maxPending: maxPending, free: slots, pending: map[string]int{}}
	for i := range s.classes {
		s.classes[i].bySource = map[string][]*semWaiter{}
	}
	return s
}

// acquire waits for a slot; ErrBusy when source already has maxPending
// waiters.
func (s *fairSem) acquire(ctx context.Context, source string, clean bool) error {
	class := 1
	if clean {
		class = 0
	}
	s.mu.Lock()
	if s.free > 0 {
		s.free--
		s.mu.Unlock()
		return nil
	}
	if s.maxPending > 0 && s.pending[source] >= s.maxPending {
		s.mu.Unlock()
		return ErrBusy
	}
	w := &semWaiter{ch: make(chan struct{})}
	q := &s.classes[class]
	if len(q.bySource[source]) == 0 {
		q.ring = append(q.ring, source)
	}
	q.bySource[source] = append(q.bySource[source], w)
	s.pending[source]++
	s.mu.Unlock()

	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	if w.granted {
		s.mu.Unlock()
		s.release()
	} else {
		q.remove(source, w)
		s.donePending(source)
		s.mu.Unlock()
	}
	return ctx.Err()
}

// release hands the slot to the next waiter, or frees it.
func (s *fairSem) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.classes {
		if src, w := s.classes[i].pop(); w != nil {
			s.donePending(src)
			w.granted = true
			close(w.ch)
			return
		}
	}
	s.free++
}

func (s *fairSem) donePending(source string) {
	if s.pending[source]--; s.pending[source] <= 0 {
		delete(s.pending, source)
	}
}

// pop takes the first waiter of the next source in the ring.
func (q *fairQueue) pop() (string, *semWaiter) {
	if len(q.ring) == 0 {
		return "", nil
	}
	if q.next >= len(q.ring) {
		q.next = 0
	}
	src := q.ring[q.next]
	ws := q.bySource[src]
	w := ws[0]
	if len(ws) == 1 {
		delete(q.bySource, src)
		q.ring = append(q.ring[:q.next], q.ring[q.next+1:]...)
	} else {
		q.bySource[src] = ws[1:]
		q.next++
	}
	return src, w
}

func (q *fairQueue) remove(source string, w *semWaiter) {
	ws := q.bySource[source]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) > 0 {
		q.bySource[source] = ws
		return
	}
	delete(q.bySource, source)
	for i, s := range q.ring {
		if s == source {
			q.ring = append(q.ring[:i], q.ring[i+1:]...)
			if q.next > i {
				q.next--
			}
			break
		}
	}
}
