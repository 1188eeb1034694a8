// Package freeport hands out loopback TCP ports to tests and harnesses that
// must name an address before the server behind it starts: static raft peer
// lists, and child processes such as rookeryd and Cyrus that bind their own
// ports.
//
// The usual trick (listen on port 0, read the port, close, hand it on) races
// in two ways. The kernel gives the same ephemeral ports to the local end of
// outgoing connections, and `go test ./...` runs packages in parallel, so
// another process may take the port before the server binds it. freeport
// avoids both: it picks ports below the kernel's ephemeral range, which
// outgoing connections never use, and it holds an exclusive flock(2) on one
// file per port until the ports are released, so cooperating processes on
// this machine never hand out the same port twice. A process that dies drops
// its locks with it.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Lowest port handed out; below it live well-known and registered services.
const minPort = 10000

// Ports is a set of reserved ports, held until Release.
type Ports struct {
	List  []int
	locks []*os.File
}

// Take reserves n distinct ports on 127.0.0.1 that are free now and that no
// other freeport user on this machine holds.
func Take(n int) (*Ports, error) {
	lo, hi := candidateRange()
	dir := filepath.Join(os.TempDir(), "rookery-freeport")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("freeport: %w", err)
	}
	span := hi - lo
	start := rand.IntN(span)
	p := &Ports{}
	for i := 0; i < span && len(p.List) < n; i++ {
		port := lo + (start+i)%span
		f, err := reserve(dir, port)
		if err != nil {
			continue
		}
		p.List = append(p.List, port)
		p.locks = append(p.locks, f)
	}
	if len(p.List) < n {
		p.Release()
		return nil, fmt.Errorf("freeport: only %d of %d ports free in %d-%d", len(p.List), n, lo, hi-1)
	}
	return p, nil
}

// Addrs returns the ports as 127.0.0.1:port addresses.
func (p *Ports) Addrs() []string {
	out := make([]string, len(p.List))
	for i, port := range p.List {
		out[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	return out
}

// Release gives the ports back. Servers bound to them keep running; only
// the reservation ends.
func (p *Ports) Release() {
	for _, f := range p.locks {
		f.Close()
	}
	p.locks = nil
}

// T reserves n ports for the rest of the test, failing it if it cannot.
func T(tb testing.TB, n int) []int {
	tb.Helper()
	p, err := Take(n)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Release)
	return p.List
}

// Addr reserves one port for the rest of the test and returns its address.
func Addr(tb testing.TB) string {
	tb.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(T(tb, 1)[0]))
}

// reserve locks port's file and checks that the port can be bound.
func reserve(dir string, port int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		f.Close()
		return nil, err
	}
	ln.Close()
	return f, nil
}

// candidateRange returns [lo, hi): the ports between minPort and the start
// of the kernel's ephemeral range.
func candidateRange() (lo, hi int) {
	ephemeralLow := 32768
	if low, err := readEphemeralLow(); err == nil && low > minPort+1000 {
		ephemeralLow = low
	}
	return minPort, ephemeralLow
}

func readEphemeralLow() (int, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return 0, errors.New("freeport: unexpected ip_local_port_range")
	}
	return strconv.Atoi(fields[0])
}
