package freeport

import (
	"net"
	"os"
	"strconv"
	"testing"
)

func TestTakeNeverHandsOutAHeldPortTwice(t *testing.T) {
	a, err := Take(200)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	b, err := Take(200)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	seen := map[int]bool{}
	for _, p := range append(append([]int{}, a.List...), b.List...) {
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}

func TestTakeStaysBelowTheEphemeralRange(t *testing.T) {
	lo, hi := candidateRange()
	for _, p := range T(t, 50) {
		if p < lo || p >= hi {
			t.Fatalf("port %d outside [%d,%d)", p, lo, hi)
		}
	}
	if low, err := readEphemeralLow(); err == nil && hi > low {
		t.Fatalf("range end %d reaches into the ephemeral range starting at %d", hi, low)
	}
}

func TestTakeSkipsAPortSomeoneListensOn(t *testing.T) {
	p, err := Take(1)
	if err != nil {
		t.Fatal(err)
	}
	port := p.List[0]
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p.Release()
	if f, err := reserve(t.TempDir(), port); err == nil {
		f.Close()
		t.Fatalf("reserve(%d) succeeded while a listener holds it", port)
	}
}

func TestReleasedPortsCanBeTakenAgain(t *testing.T) {
	dir := t.TempDir()
	lo, _ := candidateRange()
	var port int
	var f *os.File
	for port = lo; port < lo+1000; port++ {
		var err error
		if f, err = reserve(dir, port); err == nil {
			break
		}
	}
	if f == nil {
		t.Fatal("no reservable port")
	}
	if g, err := reserve(dir, port); err == nil {
		g.Close()
		t.Fatalf("port %d reserved twice while held", port)
	}
	f.Close()
	g, err := reserve(dir, port)
	if err != nil {
		t.Fatalf("port %d not reservable after release: %v", port, err)
	}
	g.Close()
}
