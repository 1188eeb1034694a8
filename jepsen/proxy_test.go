package jepsen

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rookery/rookery/internal/freeport"
)

// echoServer echoes every line it receives and counts the bytes it got.
type echoServer struct {
	ln       net.Listener
	received atomic.Int64
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					e.received.Add(int64(len(line)))
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return e
}

func startProxy(t *testing.T, nt *Net, target string, src string) *Proxy {
	t.Helper()
	p, err := NewProxy(ProxyConfig{
		Node: "b", Target: target, Net: nt,
		Identify: func(net.Addr, net.Addr) string { return src },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dialLine(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func readLineWithin(c net.Conn, br *bufio.Reader, d time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	return br.ReadString('\n')
}

// refused returns nil when a connection to addr is refused: reset before
// connect returns, or closed before anything is answered.
func refused(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil
	}
	defer c.Close()
	_, _ = c.Write([]byte("x\n"))
	got, err := readLineWithin(c, bufio.NewReader(c), 3*time.Second)
	if err == nil || isTimeout(err) {
		return fmt.Errorf("got %q, %v; want a reset or EOF", got, err)
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestProxyForwardsWhenLinksPass(t *testing.T) {
	echo := startEcho(t)
	p := startProxy(t, NewNet(), echo.ln.Addr().String(), "a")
	c, br := dialLine(t, p.Addr())
	for _, msg := range []string{"one\n", "two\n"} {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got, err := readLineWithin(c, br, 2*time.Second)
		if err != nil || got != msg {
			t.Fatalf("echo = %q, %v; want %q", got, err, msg)
		}
	}
}

func TestProxyBlackholeHoldsBytesUntilHealed(t *testing.T) {
	echo := startEcho(t)
	nt := NewNet()
	p := startProxy(t, nt, echo.ln.Addr().String(), "a")
	c, br := dialLine(t, p.Addr())
	nt.Partition([][]string{{"a"}, {"b"}}, Blackhole)
	if _, err := c.Write([]byte("held\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := readLineWithin(c, br, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("read through a blackhole = %q, %v; want a timeout", got, err)
	}
	if n := echo.received.Load(); n != 0 {
		t.Fatalf("server received %d bytes through a blackhole", n)
	}
	nt.Heal()
	got, err := readLineWithin(c, br, 2*time.Second)
	if err != nil || got != "held\n" {
		t.Fatalf("after heal: %q, %v; want the held bytes delivered", got, err)
	}
}

func TestProxyOneWayBlackholeLetsRequestsThroughButHoldsReplies(t *testing.T) {
	echo := startEcho(t)
	nt := NewNet()
	p := startProxy(t, nt, echo.ln.Addr().String(), "a")
	c, br := dialLine(t, p.Addr())
	nt.Set("b", "a", Blackhole) // replies from the node are held
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := readLineWithin(c, br, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("reply crossed a blackholed direction: %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for echo.received.Load() != 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := echo.received.Load(); n != 5 {
		t.Fatalf("server received %d bytes; the open direction must deliver the request", n)
	}
}

func TestProxySeverResetsConnectionsAndRefusesNewOnes(t *testing.T) {
	echo := startEcho(t)
	nt := NewNet()
	p := startProxy(t, nt, echo.ln.Addr().String(), "a")
	c, br := dialLine(t, p.Addr())
	nt.Set("a", "b", Sever)
	if _, err := readLineWithin(c, br, 2*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("existing connection after sever: err = %v; want a reset/EOF", err)
	}
	if err := refused(p.Addr()); err != nil {
		t.Fatalf("new connection while severed: %v", err)
	}
	nt.Heal()
	c3, br3 := dialLine(t, p.Addr())
	_, _ = c3.Write([]byte("back\n"))
	if got, err := readLineWithin(c3, br3, 2*time.Second); err != nil || got != "back\n" {
		t.Fatalf("after heal: %q, %v", got, err)
	}
}

func TestProxyDropDiscardsBytes(t *testing.T) {
	echo := startEcho(t)
	nt := NewNet()
	p := startProxy(t, nt, echo.ln.Addr().String(), "a")
	c, br := dialLine(t, p.Addr())
	nt.Set("a", "b", Drop)
	_, _ = c.Write([]byte("lost\n"))
	if _, err := readLineWithin(c, br, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("dropped bytes were answered: %v", err)
	}
	nt.Heal()
	_, _ = c.Write([]byte("kept\n"))
	got, err := readLineWithin(c, br, 2*time.Second)
	if err != nil || got != "kept\n" {
		t.Fatalf("after heal: %q, %v; want only the bytes sent after the drop", got, err)
	}
}

func TestProxyRefusesWhenTargetIsDown(t *testing.T) {
	target := freeport.Addr(t)
	p := startProxy(t, NewNet(), target, "a")
	if err := refused(p.Addr()); err != nil {
		t.Fatalf("connection to a dead node: %v", err)
	}
}

func TestNetPartitionCutsOnlyLinksBetweenGroups(t *testing.T) {
	nt := NewNet()
	nt.Partition([][]string{{"n1", "n2"}, {"n3"}}, Blackhole)
	for _, tc := range []struct {
		from, to string
		want     Mode
	}{
		{"n1", "n2", Pass}, {"n2", "n1", Pass},
		{"n1", "n3", Blackhole}, {"n3", "n1", Blackhole},
		{"n2", "n3", Blackhole}, {"n3", "n2", Blackhole},
	} {
		if got, _ := nt.Mode(tc.from, tc.to); got != tc.want {
			t.Errorf("%s->%s = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
	nt.Heal()
	if f := nt.Faulty(); len(f) != 0 {
		t.Fatalf("after heal: %v", f)
	}
}

// TestOwnersIdentifiesTheProcessThatDialed runs a child process that dials
// a proxy and checks the proxy attributes the connection to the child, not
// to this process that also holds sockets on the same ports.
func TestOwnersIdentifiesTheProcessThatDialed(t *testing.T) {
	if os.Getenv("JEPSEN_DIAL_HELPER") != "" {
		t.Skip("helper mode")
	}
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp")
	}
	echo := startEcho(t)
	owners := NewOwners()
	var mu sync.Mutex
	var seen []string
	p, err := NewProxy(ProxyConfig{
		Node: "b", Target: echo.ln.Addr().String(), Net: NewNet(),
		Identify: func(r, l net.Addr) string {
			id := owners.Identify(r, l)
			mu.Lock()
			seen = append(seen, id)
			mu.Unlock()
			return id
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestDialHelperProcess$")
	cmd.Env = append(os.Environ(), "JEPSEN_DIAL_HELPER="+p.Addr())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	owners.Set(cmd.Process.Pid, "child")
	owners.Set(os.Getpid(), "self")
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "echo ok") {
		t.Fatalf("helper: %q, %v", line, err)
	}
	// A connection from this process is attributed to it.
	c, br := dialLine(t, p.Addr())
	_, _ = c.Write([]byte("me\n"))
	if _, err := readLineWithin(c, br, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != "child" || seen[1] != "self" {
		t.Fatalf("identified %q; want [child self]", seen)
	}
}

// TestDialHelperProcess is the child of the test above: it dials the proxy,
// checks the echo, reports, and waits for stdin to close.
func TestDialHelperProcess(t *testing.T) {
	addr := os.Getenv("JEPSEN_DIAL_HELPER")
	if addr == "" {
		t.Skip("only run as a helper process")
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		os.Stdout.WriteString("dial failed\n")
		os.Exit(1)
	}
	_, _ = c.Write([]byte("hi\n"))
	if l, err := bufio.NewReader(c).ReadString('\n'); err != nil || l != "hi\n" {
		os.Stdout.WriteString("echo failed\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("echo ok\n")
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}
