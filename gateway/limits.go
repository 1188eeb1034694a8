package gateway

import (
	"net"
	"sync"
	"time"
)

// loginLimiter counts failed logins per source IP in a fixed window. A
// success does not clear the count: one valid account must not let an
// attacker reset the budget for guessing others.
type loginLimiter struct {
	limit  int
	window time.Duration
	max    int
	now    func() time.Time

	mu  sync.Mutex
	ips map[string]*failWindow
}

type failWindow struct {
	start time.Time
	count int
}

func newLoginLimiter(limit int, window time.Duration, maxTracked int, now func() time.Time) *loginLimiter {
	if maxTracked <= 0 {
		maxTracked = 100_000
	}
	return &loginLimiter{limit: limit, window: window, max: maxTracked, now: now, ips: make(map[string]*failWindow)}
}

// Blocked reports whether ip has used up its failures for this window.
func (l *loginLimiter) Blocked(ip string) bool {
	if l.limit <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.ips[ip]
	if w == nil {
		return false
	}
	if l.now().Sub(w.start) >= l.window {
		delete(l.ips, ip)
		return false
	}
	return w.count >= l.limit
}

// Fail records one failed login from ip.
func (l *loginLimiter) Fail(ip string) {
	if l.limit <= 0 {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.ips[ip]
	if w == nil || now.Sub(w.start) >= l.window {
		if w == nil && len(l.ips) >= l.max {
			l.evictLocked(now)
		}
		w = &failWindow{start: now}
		l.ips[ip] = w
	}
	w.count++
}

// evictLocked drops expired windows, and if that frees nothing, one
// arbitrary entry, so the table stays bounded under a spoofed-source
// flood (the cost is forgetting one IP's failures early).
func (l *loginLimiter) evictLocked(now time.Time) {
	for ip, w := range l.ips {
		if now.Sub(w.start) >= l.window {
			delete(l.ips, ip)
		}
	}
	if len(l.ips) < l.max {
		return
	}
	for ip := range l.ips {
		delete(l.ips, ip)
		return
	}
}

// connLimiter bounds concurrent connections, in total and per source IP.
type connLimiter struct {
	total, perIP int

	mu    sync.Mutex
	count int
	ips   map[string]int
}

func newConnLimiter(total, perIP int) *connLimiter {
	return &connLimiter{total: total, perIP: perIP, ips: make(map[string]int)}
}

// Acquire reserves a slot for ip; Release must follow when it returns true.
func (c *connLimiter) Acquire(ip string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.total > 0 && c.count >= c.total {
		return false
	}
	if c.perIP > 0 && c.ips[ip] >= c.perIP {
		return false
	}
	c.count++
	c.ips[ip]++
	return true
}

// Release frees a slot taken by Acquire.
func (c *connLimiter) Release(ip string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count--
	if c.ips[ip] <= 1 {
		delete(c.ips, ip)
	} else {
		c.ips[ip]--
	}
}

// remoteIP returns the IP part of a connection's remote address.
func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
