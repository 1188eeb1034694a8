package jepsen

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// ProxyConfig configures a Proxy.
type ProxyConfig struct {
	// Node is the node the proxy stands in front of: the To of every link
	// it forwards.
	Node string
	// Listen is the proxy's address (127.0.0.1:0 picks a port).
	Listen string
	// Target is the node's real address.
	Target string
	// Net is the fault table.
	Net *Net
	// Identify names the node that opened an accepted connection, from
	// its two ends; "" means unknown, and links from an unknown source pass.
	Identify func(remote, local net.Addr) string
	// DialTimeout bounds connecting to Target.
	DialTimeout time.Duration
	Logger      *slog.Logger
}

// Proxy is a TCP proxy in front of one node's port. Each accepted
// connection is attributed to the node that opened it, and each direction
// of it obeys the Net's mode for that directed link, so partitions between
// real processes are made of real TCP behaviour: held bytes, resets and
// refusals, not a mocked transport.
type Proxy struct {
	cfg ProxyConfig
	ln  net.Listener

	mu     sync.Mutex
	conns  map[*proxyConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewProxy listens on cfg.Listen and starts forwarding.
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Net == nil || cfg.Target == "" || cfg.Node == "" {
		return nil, errors.New("jepsen: proxy needs Node, Target and Net")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Identify == nil {
		cfg.Identify = func(net.Addr, net.Addr) string { return "" }
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("jepsen: proxy for %s: %w", cfg.Node, err)
	}
	p := &Proxy{cfg: cfg, ln: ln, conns: map[*proxyConn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address peers should dial instead of the node's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops accepting and closes every forwarded connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, c := range conns {
		c.close(false)
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.cfg.Logger.Warn("proxy accept", "node", p.cfg.Node, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(in)
		}()
	}
}

// handle forwards one connection until either side ends it or a fault
// severs it.
func (p *Proxy) handle(in net.Conn) {
	src := p.cfg.Identify(in.RemoteAddr(), in.LocalAddr())
	dst := p.cfg.Node
	if p.severed(src, dst) {
		reset(in)
		return
	}
	out, err := net.DialTimeout("tcp", p.cfg.Target, p.cfg.DialTimeout)
	if err != nil {
		// The node is down: refuse as it would.
		reset(in)
		return
	}
	c := &proxyConn{in: in, out: out, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.close(false)
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.pump(p.cfg.Net, in, out, src, dst) }()
	go func() { defer wg.Done(); c.pump(p.cfg.Net, out, in, dst, src) }()
	go c.watchSever(p.cfg.Net, src, dst)
	wg.Wait()
	c.close(false)
}

func (p *Proxy) severed(src, dst string) bool {
	if src == "" {
		return false
	}
	m1, _ := p.cfg.Net.Mode(src, dst)
	m2, _ := p.cfg.Net.Mode(dst, src)
	return m1 == Sever || m2 == Sever
}

// proxyConn is one forwarded connection: in is the dialer's side, out the
// node's.
type proxyConn struct {
	in, out net.Conn
	once    sync.Once
	done    chan struct{}
}

// pump copies from r to w under the mode of the link from→to.
func (c *proxyConn) pump(nt *Net, r, w net.Conn, from, to string) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 && !c.forward(nt, w, buf[:n], from, to) {
			return
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				// Orderly close: pass it on, keep the other direction.
				if tc, ok := w.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
					return
				}
			}
			c.close(false)
			return
		}
	}
}

// forward delivers, holds or discards one chunk; false ends the pump.
func (c *proxyConn) forward(nt *Net, w net.Conn, b []byte, from, to string) bool {
	for {
		m := Pass
		var changed <-chan struct{}
		if from != "" && to != "" {
			m, changed = nt.Mode(from, to)
		}
		switch m {
		case Pass:
			if _, err := w.Write(b); err != nil {
				c.close(false)
				return false
			}
			return true
		case Drop:
			return true
		case Sever:
			c.close(true)
			return false
		}
		// Blackhole: hold the bytes until the link changes.
		select {
		case <-changed:
		case <-c.done:
			return false
		}
	}
}

// watchSever resets the connection as soon as either direction is severed.
func (c *proxyConn) watchSever(nt *Net, src, dst string) {
	if src == "" {
		return
	}
	for {
		m1, changed := nt.Mode(src, dst)
		m2, _ := nt.Mode(dst, src)
		if m1 == Sever || m2 == Sever {
			c.close(true)
			return
		}
		select {
		case <-changed:
		case <-c.done:
			return
		}
	}
}

// close ends both sides; with rst the peers see a reset, not a FIN.
func (c *proxyConn) close(rst bool) {
	c.once.Do(func() {
		close(c.done)
		if rst {
			reset(c.in)
			reset(c.out)
			return
		}
		c.in.Close()
		c.out.Close()
	})
}

// reset closes a TCP connection with RST.
func reset(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	conn.Close()
}
