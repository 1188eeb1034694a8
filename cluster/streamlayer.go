package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

const (
	// raftHandshakeTimeout bounds the whole handshake on either side. An
	// honest peer needs a round trip and a half; the bound cuts off a peer
	// that trickles bytes to hold a connection open. It equals raft's own
	// per-RPC I/O deadline (transportTimeout): a shorter one made links on
	// an overloaded host (load average 35 on 2 cores, through the Jepsen
	// proxies) fail handshakes that raft itself would have waited for, and
	// every failure cost a new connection, so it fed on itself.
	raftHandshakeTimeout = transportTimeout
	// maxPendingHandshakes bounds connections accepted but not yet
	// authenticated; more are closed at once (and counted as refused).
	maxPendingHandshakes = 256
	// refusalLogInterval rate-limits the refusal log line.
	refusalLogInterval = 10 * time.Second
)

// secretStreamLayer is raft's StreamLayer when no raft TLS is configured:
// every connection, in and out, must pass the handshake (handshake.go)
// before raft's transport sees a byte of it, and then runs sealed
// (sealedConn). Strangers are closed without an answer.
type secretStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	secret    []byte
	authKey   []byte
	timeout   time.Duration
	logger    *slog.Logger

	accepted chan net.Conn
	closed   chan struct{}
	once     sync.Once
	pending  chan struct{} // semaphore of handshakes in progress

	refused atomic.Uint64
	logMu   sync.Mutex
	lastLog time.Time
	quiet   uint64 // refusals not logged since lastLog
}

func newSecretStreamLayer(addr string, advertise net.Addr, secret []byte, logger *slog.Logger) (*secretStreamLayer, error) {
	authKey, err := deriveAuthKey(secret)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft secret: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft transport on %s: %w", addr, err)
	}
	s := &secretStreamLayer{
		ln:        ln,
		advertise: advertise,
		secret:    append([]byte(nil), secret...),
		authKey:   authKey,
		timeout:   raftHandshakeTimeout,
		logger:    logger,
		accepted:  make(chan net.Conn),
		closed:    make(chan struct{}),
		pending:   make(chan struct{}, maxPendingHandshakes),
	}
	go s.acceptLoop()
	return s, nil
}

// acceptLoop accepts TCP connections and authenticates each on its own
// goroutine, so a slow or silent client holds up nobody else.
func (s *secretStreamLayer) acceptLoop() {
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: retry, slowing down.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		select {
		case s.pending <- struct{}{}:
			go s.authenticate(c)
		default:
			s.refuse(c, errors.New("too many handshakes in progress"))
		}
	}
}

func (s *secretStreamLayer) authenticate(c net.Conn) {
	defer func() { <-s.pending }()
	_ = c.SetDeadline(time.Now().Add(s.timeout))
	keys, err := serverHandshake(c, s.secret, s.authKey)
	if err != nil {
		s.refuse(c, err)
		return
	}
	_ = c.SetDeadline(time.Time{})
	sc, err := newSealedConn(c, keys)
	if err != nil {
		s.refuse(c, err)
		return
	}
	select {
	case s.accepted <- sc:
	case <-s.closed:
		_ = c.Close()
	}
}

// refuse closes c, counts it and logs it, at most once per
// refusalLogInterval (with the number not logged since).
func (s *secretStreamLayer) refuse(c net.Conn, why error) {
	remote := c.RemoteAddr().String()
	_ = c.Close()
	s.refused.Add(1)
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if now := time.Now(); now.Sub(s.lastLog) >= refusalLogInterval {
		s.logger.Warn("raft connection refused: the peer did not prove the cluster secret",
			"remote", remote, "reason", why, "refused_total", s.refused.Load(), "not_logged_since_last", s.quiet)
		s.lastLog, s.quiet = now, 0
	} else {
		s.quiet++
	}
}

// Refused is the number of inbound connections refused so far.
func (s *secretStreamLayer) Refused() uint64 { return s.refused.Load() }

// Accept returns the next authenticated connection.
func (s *secretStreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.accepted:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections already handed to raft are raft's.
func (s *secretStreamLayer) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		err = s.ln.Close()
	})
	return err
}

// Addr is the advertised address: the configured one, or what was bound.
func (s *secretStreamLayer) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.ln.Addr()
}

// Dial connects to a peer and runs the client handshake within timeout
// (raft's) or the handshake bound, whichever is shorter.
func (s *secretStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	bound := s.timeout
	if timeout > 0 && timeout < bound {
		bound = timeout
	}
	deadline := time.Now().Add(bound)
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(deadline)
	keys, err := clientHandshake(c, s.secret, s.authKey)
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("raft peer %s: %w", address, err)
	}
	_ = c.SetDeadline(time.Time{})
	sc, err := newSealedConn(c, keys)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return sc, nil
}

// RaftRefusedConnections is how many inbound raft connections this node
// refused because they did not prove the cluster secret. It stays 0 with
// raft TLS (the TLS handshake refuses strangers) and with RaftInsecure.
func (n *Node) RaftRefusedConnections() uint64 {
	if n.raftStream == nil {
		return 0
	}
	return n.raftStream.Refused()
}
