package cluster

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// trackedStream is a raft StreamLayer whose Close also closes every
// connection it accepted or dialed.
//
// raft's NetworkTransport.Close only closes the stream layer, that is the
// listener. Each accepted connection keeps a goroutine (handleConn) blocked
// reading it until the peer hangs up, and pooled outbound connections stay
// open, so a closed node leaves goroutines and file descriptors behind,
// and keeps its peers' goroutines waiting too. Closing the connections
// ends them. A read on a connection closed this way returns io.EOF, which
// handleConn takes as a clean hang-up rather than logging a decode error.
type trackedStream struct {
	raft.StreamLayer

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func trackConns(s raft.StreamLayer) *trackedStream {
	return &trackedStream{StreamLayer: s, conns: map[*trackedConn]struct{}{}}
}

// Accept returns the next connection of the wrapped layer, tracked.
func (s *trackedStream) Accept() (net.Conn, error) {
	c, err := s.StreamLayer.Accept()
	if err != nil {
		return nil, err
	}
	return s.track(c)
}

// Dial dials through the wrapped layer and tracks the connection.
func (s *trackedStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := s.StreamLayer.Dial(address, timeout)
	if err != nil {
		return nil, err
	}
	return s.track(c)
}

// track registers c, or closes it when the layer closed meanwhile.
func (s *trackedStream) track(c net.Conn) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, owner: s}
	s.conns[tc] = struct{}{}
	return tc, nil
}

func (s *trackedStream) forget(c *trackedConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close closes the wrapped layer, then every connection still open.
func (s *trackedStream) Close() error {
	err := s.StreamLayer.Close()
	s.mu.Lock()
	conns := s.conns
	s.conns, s.closed = nil, true
	s.mu.Unlock()
	for c := range conns {
		c.shut.Store(true)
		_ = c.Conn.Close()
	}
	return err
}

// trackedConn is one connection of a trackedStream.
type trackedConn struct {
	net.Conn
	owner *trackedStream
	shut  atomic.Bool // closed by the layer's Close
}

// Read reports io.EOF once the layer has closed the connection.
func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.shut.Load() {
		err = io.EOF
	}
	return n, err
}

// Close closes the connection and stops tracking it.
func (c *trackedConn) Close() error {
	c.owner.forget(c)
	return c.Conn.Close()
}
