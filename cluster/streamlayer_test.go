package cluster

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/internal/freeport"
)

// logBuffer is a concurrency-safe log sink for assertions on log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newTestStreamLayer(t *testing.T, secret string) (*secretStreamLayer, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	s, err := newSecretStreamLayer(freeport.Addr(t), nil, []byte(secret), slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, logs
}

// Two stream layers with the same secret connect, and bytes of every size
// cross in both directions unchanged.
func TestSecretStreamLayerCarriesBytesBothWays(t *testing.T) {
	server, _ := newTestStreamLayer(t, testRaftSecret)
	client, _ := newTestStreamLayer(t, testRaftSecret)

	payload := make([]byte, 3*maxFramePlain+123) // several frames
	_, _ = rand.Read(payload)
	errc := make(chan error, 1)
	go func() {
		c, err := server.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		got := make([]byte, len(payload))
		if _, err := io.ReadFull(c, got); err != nil {
			errc <- err
			return
		}
		if !bytes.Equal(got, payload) {
			errc <- errors.New("server read different bytes")
			return
		}
		_, err = c.Write(got[:1000])
		errc <- err
	}()
	c, err := client.Dial(raft.ServerAddress(server.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < len(payload); i += 7777 { // uneven writes
		end := min(i+7777, len(payload))
		if _, err := c.Write(payload[i:end]); err != nil {
			t.Fatal(err)
		}
	}
	back := make([]byte, 1000)
	if _, err := io.ReadFull(c, back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, payload[:1000]) {
		t.Fatal("client read different bytes")
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if server.Refused() != 0 {
		t.Fatalf("refused %d connections of a peer with the secret", server.Refused())
	}
}

// A peer with another secret is refused on both sides: the server does
// not hand its connection to raft, and its own dial fails.
func TestSecretStreamLayerRefusesWrongSecret(t *testing.T) {
	server, logs := newTestStreamLayer(t, testRaftSecret)
	other, _ := newTestStreamLayer(t, "another-cluster-secret-0123")

	if _, err := other.Dial(raft.ServerAddress(server.Addr().String()), time.Second); err == nil || !errors.Is(err, errHandshake) {
		t.Fatalf("dial with the wrong secret: %v, want a handshake error", err)
	}
	if _, err := server.Dial(raft.ServerAddress(other.Addr().String()), time.Second); err == nil || !errors.Is(err, errHandshake) {
		t.Fatalf("dial to a server with the wrong secret: %v, want a handshake error", err)
	}
	waitFor(t, "the condition", func() bool { return server.Refused() == 1 && other.Refused() == 1 })
	assertNoAccept(t, server)
	out := logs.String()
	if !strings.Contains(out, "raft connection refused") || !strings.Contains(out, "remote=127.0.0.1:") {
		t.Fatalf("refusal not logged with the remote address:\n%s", out)
	}
	if strings.Contains(out, testRaftSecret) {
		t.Fatalf("the log holds the secret:\n%s", out)
	}
}

// A client that connects and trickles (or sends nothing) is cut off at the
// handshake deadline, and meanwhile honest peers still get through.
func TestSecretStreamLayerCutsOffSlowHandshakes(t *testing.T) {
	server, _ := newTestStreamLayer(t, testRaftSecret)
	server.timeout = 300 * time.Millisecond
	client, _ := newTestStreamLayer(t, testRaftSecret)

	slow, err := net.Dial("tcp", server.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	start := time.Now()
	go func() { // one byte of the magic, then nothing
		_, _ = slow.Write([]byte(handshakeMagic[:1]))
	}()

	go func() {
		if c, err := server.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := client.Dial(raft.ServerAddress(server.Addr().String()), time.Second)
	if err != nil {
		t.Fatalf("an honest peer waits behind a slow one: %v", err)
	}
	c.Close()

	_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := slow.Read(make([]byte, 1))
	var ne net.Error
	if n != 0 || err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("slow client read %d bytes, err %v; want the connection closed", n, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("slow client cut off after %v; want about the 300ms deadline", d)
	}
	waitFor(t, "the condition", func() bool { return server.Refused() == 1 })
}

// assertNoAccept checks that nothing reaches the stream layer's consumer.
func assertNoAccept(t *testing.T, s *secretStreamLayer) {
	t.Helper()
	select {
	case c := <-s.accepted:
		c.Close()
		t.Fatal("an unauthenticated connection was handed to raft")
	case <-time.After(100 * time.Millisecond):
	}
}
