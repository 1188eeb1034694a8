package floor

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
)

func testToken(t *testing.T) []byte {
	t.Helper()
	tok := make([]byte, TokenSize)
	if _, err := rand.Read(tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startFollower runs a real Follower on a loopback listener.
func startFollower(t testing.TB, token []byte) (*Follower, string) {
	t.Helper()
	f, err := NewFollower(t.TempDir(), token, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return f, ln.Addr().String()
}

// heldFollower takes the leader's links like a follower but acknowledges
// a frame and answers a ping only when the test says so. Its forward link
// goes to the test as it is.
type heldFollower struct {
	addr     string
	frames   chan uint64
	ack      chan uint64
	pings    chan struct{}
	forwards chan net.Conn
}

func startHeldFollower(t *testing.T, token []byte) *heldFollower {
	t.Helper()
	ln := listen(t)
	h := &heldFollower{addr: ln.Addr().String(), frames: make(chan uint64, 100), ack: make(chan uint64, 100), pings: make(chan struct{}, 100), forwards: make(chan net.Conn, 1)}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		close(h.ack)
		close(h.pings)
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			kind, err := acceptLink(c, token)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.serve(c, kind)
			}()
		}
	}()
	return h
}

func (h *heldFollower) serve(c net.Conn, kind byte) {
	var b [8]byte
	if kind == kindForward {
		h.forwards <- c
		return
	}
	if kind == kindPing {
		for range h.pings {
			if _, err := io.ReadFull(c, b[:]); err != nil {
				return
			}
			if _, err := c.Write(b[:]); err != nil {
				return
			}
		}
		return
	}
	go func() {
		r := bufio.NewReader(c)
		for {
			seq, _, err := readFrame(r)
			if err != nil {
				return
			}
			h.frames <- seq
		}
	}()
	for seq := range h.ack {
		binary.BigEndian.PutUint64(b[:], seq)
		if _, err := c.Write(b[:]); err != nil {
			return
		}
	}
}

func startLeader(t testing.TB, cfg Config) *Leader {
	t.Helper()
	cfg.Dir = t.TempDir()
	l, err := NewLeader(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func activate(name string) fsm.Command {
	return fsm.Command{Op: fsm.OpActivate, Name: name, Location: "be1!default", ACL: "anyone\tlrs\t", Identity: "mupdate"}
}

func TestAWriteIsAnsweredOnlyOnceAFollowerHasSyncedIt(t *testing.T) {
	for _, syncFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("syncFirst=%v", syncFirst), func(t *testing.T) {
			token := testToken(t)
			f1, f2 := startHeldFollower(t, token), startHeldFollower(t, token)
			cfg := DefaultConfig()
			cfg.Followers, cfg.Token, cfg.SyncFirst = []string{f1.addr, f2.addr}, token, syncFirst
			l := startLeader(t, cfg)

			done := make(chan error, 1)
			go func() {
				_, err := l.Apply(context.Background(), []fsm.Command{activate("user.a")})
				done <- err
			}()
			seq := <-f1.frames
			<-f2.frames
			select {
			case err := <-done:
				t.Fatalf("answered with only the leader's own copy: %v", err)
			case <-time.After(200 * time.Millisecond):
			}
			if _, ok := l.Store().Get("user.a"); ok {
				t.Fatal("applied before a quorum held it")
			}
			f2.ack <- seq
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if _, ok := l.Store().Get("user.a"); !ok {
				t.Fatal("committed write not applied on the leader")
			}
		})
	}
}

func TestEveryAnsweredWriteIsOnBothFollowers(t *testing.T) {
	token := testToken(t)
	f1, a1 := startFollower(t, token)
	f2, a2 := startFollower(t, token)
	cfg := DefaultConfig()
	cfg.Followers, cfg.Token = []string{a1, a2}, token
	l := startLeader(t, cfg)

	const writers, each = 16, 20
	writeConcurrently(t, writers, each, "user.w", func(cmds []fsm.Command) ([]fsm.Result, error) {
		return l.Apply(context.Background(), cmds)
	})
	// Both followers acknowledged the last batch once the leader's
	// pending list drained; give the slower one its last sync.
	deadline := time.Now().Add(5 * time.Second)
	for _, f := range []*Follower{f1, f2} {
		for f.store.AppliedIndex() < l.Store().AppliedIndex() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		for w := range writers {
			for i := range each {
				if _, ok := f.store.Get(fmt.Sprintf("user.w%d.m%d", w, i)); !ok {
					t.Fatalf("follower misses user.w%d.m%d", w, i)
				}
			}
		}
	}
	if got := l.Store().AppliedIndex(); got >= writers*each {
		t.Errorf("%d batches for %d concurrent writes: no grouping", got, writers*each)
	}
}

func TestAReadWaitsForAFollowersAnswer(t *testing.T) {
	token := testToken(t)
	f1, f2 := startHeldFollower(t, token), startHeldFollower(t, token)
	cfg := DefaultConfig()
	cfg.Followers, cfg.Token = []string{f1.addr, f2.addr}, token
	l := startLeader(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := l.LinearizableRead(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read without any follower's answer: %v", err)
	}
	// One answer for the ping the timed-out read sent, one for the next.
	f2.pings <- struct{}{}
	f2.pings <- struct{}{}
	if err := l.LinearizableRead(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestAFollowerRefusesAPeerWithoutTheToken(t *testing.T) {
	token := testToken(t)
	f, addr := startFollower(t, token)
	c, err := dialLink(addr, testToken(t), kindLog)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := fsm.EncodeCommands([]fsm.Command{activate("user.x")})
	if _, err := c.Write(putFrame(nil, 1, payload)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 8)); err == nil {
		t.Fatalf("follower answered a stranger with %d bytes", n)
	}
	if _, ok := f.store.Get("user.x"); ok {
		t.Fatal("follower applied a stranger's frame")
	}
}

// writeConcurrently has writers goroutines each apply `each` ACTIVATEs
// named prefix<w>.m<i> and fails the test on any error or failed result.
func writeConcurrently(t *testing.T, writers, each int, prefix string, apply func([]fsm.Command) ([]fsm.Result, error)) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				rs, err := apply([]fsm.Command{activate(fmt.Sprintf("%s%d.m%d", prefix, w, i))})
				if err == nil && (len(rs) != 1 || rs[0].Code != fsm.CodeOK) {
					err = fmt.Errorf("result %+v", rs)
				}
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
