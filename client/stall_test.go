package client_test

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/client"
)

// freezer is a TCP proxy to one node that can stop moving bytes while
// keeping every connection open: what a client sees of a SIGSTOPped node
// or a black-holed network path.
type freezer struct {
	lis    net.Listener
	target string
	mu     sync.Mutex
	frozen bool
	thaw   chan struct{}
}

func newFreezer(t *testing.T, target string) *freezer {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{lis: lis, target: target, thaw: make(chan struct{})}
	t.Cleanup(func() { lis.Close(); f.unfreeze() })
	go f.serve()
	return f
}

func (f *freezer) addr() string { return f.lis.Addr().String() }

func (f *freezer) serve() {
	for {
		c, err := f.lis.Accept()
		if err != nil {
			return
		}
		go func() {
			up, err := net.Dial("tcp", f.target)
			if err != nil {
				c.Close()
				return
			}
			go f.pipe(up, c)
			f.pipe(c, up)
		}()
	}
}

func (f *freezer) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		f.wait()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// wait blocks while frozen.
func (f *freezer) wait() {
	f.mu.Lock()
	frozen, thaw := f.frozen, f.thaw
	f.mu.Unlock()
	if frozen {
		<-thaw
	}
}

func (f *freezer) freeze() {
	f.mu.Lock()
	f.frozen = true
	f.mu.Unlock()
}

func (f *freezer) unfreeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.frozen {
		f.frozen = false
		close(f.thaw)
		f.thaw = make(chan struct{})
	}
}

func TestClientLeavesAFrozenNodeForReadsAndWatches(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	frozenNode := c.Follower()
	fr := newFreezer(t, c.Nodes[frozenNode].APIAddr)
	eps := []string{fr.addr()}
	for i, n := range c.Nodes {
		if i != frozenNode {
			eps = append(eps, n.APIAddr)
		}
	}
	cfg := client.DefaultConfig()
	cfg.Logger = apitest.Logger(t)
	cfg.AttemptTimeout = time.Second
	cfg.WatchProgressInterval = 100 * time.Millisecond
	cfg.WatchStallTimeout = time.Second
	cl, err := client.Dial(eps, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	activateN(t, cl, 0, 5)
	r := watch(t, cl, client.WatchOptions{})
	r.waitRev(t, 5)
	w := startWriter(t, newClient(t, c.Endpoints()), 3000)
	w.waitWrites(t, 10)
	fr.freeze()
	// The watch stalls on the frozen node and moves on: it keeps up
	// while the node stays frozen.
	w.waitWrites(t, 30)
	r.waitRev(t, c.Revision(t))
	// A fresh client whose first endpoint is frozen fails over within the
	// attempt timeout.
	cl2, err := client.Dial(eps, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	start := time.Now()
	if _, _, err := cl2.Get(testCtx(t), mailboxName(1), false); err != nil {
		t.Fatalf("get with a frozen endpoint: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("get took %v with a frozen endpoint", took)
	}
	fr.unfreeze()
	w.stop(t)
	r.waitRev(t, c.Revision(t))
	resets := r.resetList()
	if len(resets) != 1 {
		t.Fatalf("resets %v, want only the initial one", resets)
	}
	sameEvents(t, r.eventsSince(resets[0]), leaderLog(t, c, resets[0]))
	r.matchesLeader(t, c)
}
