package mupdatecompat

import (
	"container/list"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Unauthenticated connections are what an outsider can open, so they are
// bounded on their own (reference: issue 10, "unauthenticated denial of
// service"):
//
//   - each must log in within Config.PreAuthTimeout of being accepted;
//   - one source address may hold at most Config.MaxPreAuthPerSource of
//     them, and the server at most Config.MaxConnections connections in
//     all. At either cap a new connection replaces the oldest
//     unauthenticated one that is "stale": older than Config.PreAuthGrace
//     and not having its password checked. A real client logs in within
//     milliseconds of connecting and is protected while it does; a
//     half-open connection never finishes its AUTHENTICATE and becomes
//     replaceable after the grace. Only when nothing is replaceable is the
//     new connection refused (`* BYE`). Authenticated connections are never
//     closed to make room.
//
// So to lock clients out, a flood must open more than cap/PreAuthGrace
// connections per second (5,000/s at the defaults for the server, 320/s
// per address) for as long as it lasts, instead of opening them once and
// holding them, as issue 10's flood did.
//
// A replaced connection gets `* BYE` with the reason and is closed by its
// own goroutine, so the count may exceed MaxConnections by the replaced
// connections that have not closed yet.

// Reasons a connection is closed before login.
const (
	byeSourceCap   = "Too many unauthenticated connections from your address"
	byeLoginTimout = "Login timeout"
)

// preauthSet tracks the unauthenticated connections, oldest first.
type preauthSet struct {
	mu       sync.Mutex
	order    list.List // of *conn
	bySource map[string]int
}

// refusals counts every connection or login refused before or at login.
type refusals struct {
	serverFull, sourceFull, evictedSource, evictedFull, preAuthTimeout atomic.Uint64
	tlsRequired, authFailed, authThrottled                             atomic.Uint64
	readOnly, permissionDenied                                         atomic.Uint64
}

// Refusals is a snapshot of the server's refusal counters, for metrics.
type Refusals struct {
	// ServerFull: connections refused with `* BYE "Server Unable"` at
	// MaxConnections, nothing being replaceable.
	ServerFull uint64
	// SourceFull: connections refused at MaxPreAuthPerSource, nothing of
	// that address being replaceable.
	SourceFull uint64
	// EvictedPerSource: unauthenticated connections closed to make room
	// for a newer one from the same address (MaxPreAuthPerSource).
	EvictedPerSource uint64
	// EvictedServerFull: unauthenticated connections closed to make room
	// when MaxConnections was reached.
	EvictedServerFull uint64
	// PreAuthTimeouts: connections closed for not logging in within
	// PreAuthTimeout.
	PreAuthTimeouts uint64
	// TLSRequired: AUTHENTICATE refused in the clear (RequireTLSForAuth).
	TLSRequired uint64
	// AuthFailures: AUTHENTICATE answered NO (bad credentials, no role,
	// proxy denied, malformed exchange), throttled ones included.
	AuthFailures uint64
	// AuthThrottled: AUTHENTICATE refused without a password check
	// because the identity or address is in back-off or the address has
	// too many checks queued.
	AuthThrottled uint64
	// ReadOnlyWrites: writes refused because the identity is a reader.
	ReadOnlyWrites uint64
	// PermissionDenied: writes the directory refused because the entry
	// is, or would be, on a server the identity is not bound to.
	PermissionDenied uint64
}

// Refusals returns the refusal counters.
func (s *Server) Refusals() Refusals {
	r := &s.refused
	return Refusals{
		ServerFull:        r.serverFull.Load(),
		SourceFull:        r.sourceFull.Load(),
		EvictedPerSource:  r.evictedSource.Load(),
		EvictedServerFull: r.evictedFull.Load(),
		PreAuthTimeouts:   r.preAuthTimeout.Load(),
		TLSRequired:       r.tlsRequired.Load(),
		AuthFailures:      r.authFailed.Load(),
		AuthThrottled:     r.authThrottled.Load(),
		ReadOnlyWrites:    r.readOnly.Load(),
		PermissionDenied:  r.permissionDenied.Load(),
	}
}

// sourceOf is the address part of a remote address: limits apply per
// address, not per connection.
func sourceOf(a net.Addr) string {
	s := a.String()
	if host, _, err := net.SplitHostPort(s); err == nil {
		return host
	}
	return s
}

// admit registers a new unauthenticated connection, replacing a stale one
// at a cap. It returns "" or the BYE text the new connection is refused
// with.
func (s *Server) admit(c *conn) string {
	p := &s.pre
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bySource == nil {
		p.bySource = map[string]int{}
	}
	if s.cfg.MaxPreAuthPerSource > 0 && p.bySource[c.source] >= s.cfg.MaxPreAuthPerSource {
		v := s.staleLocked(c.accepted, c.source)
		if v == nil {
			s.refused.sourceFull.Add(1)
			return byeSourceCap
		}
		s.evictLocked(v, byeSourceCap)
		s.refused.evictedSource.Add(1)
	} else if s.nconns.Load() > int64(s.cfg.MaxConnections) {
		v := s.staleLocked(c.accepted, "")
		if v == nil {
			s.refused.serverFull.Add(1)
			return serverUnableText
		}
		s.evictLocked(v, serverUnableText)
		s.refused.evictedFull.Add(1)
	}
	c.preElem = p.order.PushBack(c)
	p.bySource[c.source]++
	return ""
}

// staleLocked returns the oldest replaceable connection (of source, when
// not ""), or nil.
func (s *Server) staleLocked(now time.Time, source string) *conn {
	for e := s.pre.order.Front(); e != nil; e = e.Next() {
		v := e.Value.(*conn)
		if now.Sub(v.accepted) < s.cfg.PreAuthGrace {
			return nil // the rest are younger still
		}
		if (source == "" || v.source == source) && !v.checking.Load() {
			return v
		}
	}
	return nil
}

// evictLocked removes v from the set and has its goroutine say BYE.
func (s *Server) evictLocked(v *conn, reason string) {
	s.removeLocked(v)
	v.log.Warn("mupdate unauthenticated connection closed to make room", "reason", reason, "age", time.Since(v.accepted).Round(time.Millisecond))
	v.evicted.Store(&reason)
	v.interrupt()
}

// loggedIn takes c out of the set; false if it was evicted meanwhile.
func (s *Server) loggedIn(c *conn) bool {
	s.pre.mu.Lock()
	defer s.pre.mu.Unlock()
	if c.preElem == nil {
		return false
	}
	s.removeLocked(c)
	return true
}

// forget takes a closing connection out of the set.
func (s *Server) forget(c *conn) {
	s.pre.mu.Lock()
	s.removeLocked(c)
	s.pre.mu.Unlock()
}

func (s *Server) removeLocked(c *conn) {
	if c.preElem == nil {
		return
	}
	s.pre.order.Remove(c.preElem)
	c.preElem = nil
	if s.pre.bySource[c.source]--; s.pre.bySource[c.source] <= 0 {
		delete(s.pre.bySource, c.source)
	}
}

// readDeadline is when the next read must complete: the idle timeout, and
// before login also the pre-authentication deadline.
func (c *conn) readDeadline() time.Time {
	d := time.Now().Add(c.cfg.IdleTimeout)
	if !c.authed && c.cfg.PreAuthTimeout > 0 {
		if pd := c.accepted.Add(c.cfg.PreAuthTimeout); pd.Before(d) {
			d = pd
		}
	}
	return d
}

// closedBeforeLogin says BYE to a connection evicted or out of time
// before login; false when neither applies.
func (c *conn) closedBeforeLogin() bool {
	if r := c.evicted.Load(); r != nil {
		c.final("*", "BYE", *r)
		return true
	}
	if !c.authed && c.cfg.PreAuthTimeout > 0 && !time.Now().Before(c.accepted.Add(c.cfg.PreAuthTimeout)) {
		c.srv.refused.preAuthTimeout.Add(1)
		c.log.Warn("mupdate connection closed: no login in time", "pre_auth_timeout", c.cfg.PreAuthTimeout)
		c.final("*", "BYE", byeLoginTimout)
		return true
	}
	return false
}
