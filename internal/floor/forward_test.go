package floor

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
)

// startForwarding runs a leader with two real followers and returns the
// leader and follower 1.
func startForwarding(t *testing.T) (*Leader, *Follower) {
	t.Helper()
	token := testToken(t)
	f1, a1 := startFollower(t, token)
	_, a2 := startFollower(t, token)
	cfg := DefaultConfig()
	cfg.Followers, cfg.Token = []string{a1, a2}, token
	return startLeader(t, cfg), f1
}

func reserve(name string) fsm.Command {
	return fsm.Command{Op: fsm.OpReserve, Name: name, Location: "be1!default", Identity: "mupdate"}
}

func deactivate(name string) fsm.Command {
	return fsm.Command{Op: fsm.OpDeactivate, Name: name, Location: "be1!default", Identity: "mupdate"}
}

func within(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestWritesThroughAFollowerReachBothStoresWithTheLeadersResults(t *testing.T) {
	for _, tc := range []struct {
		name string
		// local says the call returns only once the follower applied.
		local bool
	}{
		{"Apply", true},
		{"ApplyCommitted", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, f := startForwarding(t)
			fw := f.Replica()
			apply := fw.ApplyCommitted
			if tc.local {
				apply = fw.Apply
			}
			ctx := within(t, 10*time.Second)
			cmds := []fsm.Command{reserve("user.fwd"), activate("user.fwd"), deactivate("user.none")}
			rs, err := apply(ctx, cmds)
			if err != nil {
				t.Fatal(err)
			}
			want := []fsm.Code{fsm.CodeOK, fsm.CodeOK, fsm.CodeNotFound}
			if len(rs) != len(want) {
				t.Fatalf("%d results for %d commands", len(rs), len(want))
			}
			for i, r := range rs {
				if r.Code != want[i] {
					t.Errorf("command %d (%s): %s, want %s", i, cmds[i].Op, r.Code, want[i])
				}
			}
			e, ok := l.Store().Get("user.fwd")
			if !ok || e.State != fsm.StateActive || e.ModRevision != rs[1].Revision {
				t.Fatalf("leader holds %+v, %v; ACTIVATE answered revision %d", e, ok, rs[1].Revision)
			}
			if !tc.local {
				if err := fw.WaitRevision(ctx, rs[1].Revision); err != nil {
					t.Fatal(err)
				}
			}
			if fe, ok := f.Store().Get("user.fwd"); !ok || fe != e {
				t.Fatalf("follower holds %+v, %v; leader %+v", fe, ok, e)
			}
		})
	}
}

func TestConcurrentWritesThroughAFollowerShareLeaderBatches(t *testing.T) {
	l, f := startForwarding(t)
	const writers, each = 16, 10
	ctx := within(t, 30*time.Second)
	writeConcurrently(t, writers, each, "user.fw", func(cmds []fsm.Command) ([]fsm.Result, error) {
		return f.Replica().ApplyCommitted(ctx, cmds)
	})
	if got := l.Store().Len(); got != writers*each {
		t.Fatalf("leader holds %d entries after %d writes", got, writers*each)
	}
	if got := l.Store().AppliedIndex(); got >= writers*each {
		t.Errorf("%d batches for %d concurrent forwarded writes: no grouping", got, writers*each)
	}
}

func TestAFollowerReadSeesAWriteMadeAtTheLeaderBeforeIt(t *testing.T) {
	l, f := startForwarding(t)
	ctx := within(t, 30*time.Second)
	for i := range 20 {
		name := fmt.Sprintf("user.r%d", i)
		if _, err := l.Apply(ctx, []fsm.Command{activate(name)}); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := f.Replica().LinearizableGet(ctx, name); err != nil || !ok {
			t.Fatalf("follower read after the leader's write of %s: found %v, %v", name, ok, err)
		}
	}
}

func TestAFollowerCallWaitsForTheLeaderToDialItsForwardLink(t *testing.T) {
	token := testToken(t)
	f1, a1 := startFollower(t, token)
	_, a2 := startFollower(t, token)

	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := f1.Replica().ApplyCommitted(short, []fsm.Command{activate("user.early")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write with no leader yet: %v, want the context's deadline", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := f1.Replica().ApplyCommitted(within(t, 10*time.Second), []fsm.Command{activate("user.early")})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cfg := DefaultConfig()
	cfg.Followers, cfg.Token = []string{a1, a2}, token
	l := startLeader(t, cfg)
	if err := <-done; err != nil {
		t.Fatalf("write waiting for the link: %v", err)
	}
	if _, ok := l.Store().Get("user.early"); !ok {
		t.Fatal("the leader does not hold the write")
	}
}

// fakeLeader dials f's forward link as a leader would and hands it to the
// test.
func fakeLeader(t *testing.T) (*Follower, net.Conn, *bufio.Reader) {
	t.Helper()
	token := testToken(t)
	f, addr := startFollower(t, token)
	c, err := dialLink(addr, token, kindForward)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return f, c, bufio.NewReader(c)
}

// garbage breaks a forward link from either end, each in a way the
// reader must refuse without crashing or allocating without bound.
var garbage = []struct {
	name  string
	frame []byte
}{
	{"oversized frame", binary.BigEndian.AppendUint32(putForward(nil, fwdFrame{id: 1, kind: fwdAnswer})[:fwdHeader-4], maxFrame+1)},
	{"unknown kind", putForward(nil, fwdFrame{id: 1, kind: 'Z'})},
	{"cut short", putForward(nil, fwdFrame{id: 1, kind: fwdAnswer, payload: []byte("results")})[:fwdHeader+3]},
}

func TestAFollowerFailsWaitingCallsWhenItsForwardLinkBreaks(t *testing.T) {
	breaks := []struct {
		name  string
		frame []byte // sent before the fake leader closes; nil: just close
	}{
		{"closed", nil},
		{"request from the leader", putForward(nil, fwdFrame{id: 1, kind: fwdWrite})},
	}
	breaks = append(breaks, garbage...)
	for _, tc := range breaks {
		t.Run(tc.name, func(t *testing.T) {
			f, c, r := fakeLeader(t)
			ctx := within(t, 10*time.Second)
			calls := map[string]func() error{
				"write": func() error {
					_, err := f.Replica().ApplyCommitted(ctx, []fsm.Command{activate("user.lost")})
					return err
				},
				"read": func() error { return f.Replica().LinearizableRead(ctx) },
			}
			errs := make(chan error, len(calls))
			for _, call := range calls {
				go func() { errs <- call() }()
			}
			for range calls {
				if _, err := readForward(r); err != nil {
					t.Fatalf("request: %v", err)
				}
			}
			if tc.frame != nil {
				if _, err := c.Write(tc.frame); err != nil {
					t.Fatal(err)
				}
				if tc.name == "cut short" {
					c.(*net.TCPConn).CloseWrite()
				}
				if _, err := r.ReadByte(); err == nil {
					t.Error("the follower kept a link that sent it garbage")
				}
			}
			c.Close()
			for range calls {
				if err := <-errs; !errors.Is(err, directory.ErrUnavailable) {
					t.Errorf("waiting call ended with %v, want the link's loss", err)
				}
			}
			if err := calls["read"](); !errors.Is(err, directory.ErrUnavailable) {
				t.Errorf("call after the loss: %v, want the link's loss at once", err)
			}
		})
	}
}

func TestTheLeaderRefusesAGarbageForwardFrameAndGoesOn(t *testing.T) {
	bad := append([]struct {
		name  string
		frame []byte
	}{{"answer to the leader", putForward(nil, fwdFrame{id: 1, kind: fwdAnswer})}}, garbage...)
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			token := testToken(t)
			f1, f2 := startHeldFollower(t, token), startHeldFollower(t, token)
			cfg := DefaultConfig()
			cfg.Followers, cfg.Token = []string{f1.addr, f2.addr}, token
			l := startLeader(t, cfg)
			broken, good := <-f1.forwards, <-f2.forwards
			broken.SetDeadline(time.Now().Add(10 * time.Second))
			good.SetDeadline(time.Now().Add(10 * time.Second))

			if _, err := broken.Write(tc.frame); err != nil {
				t.Fatal(err)
			}
			if tc.name == "cut short" {
				broken.(*net.TCPConn).CloseWrite()
			}
			if _, err := broken.Read(make([]byte, 1)); err == nil {
				t.Fatal("the leader answered garbage")
			}
			// The other follower's forwarded write still commits.
			payload := fsm.EncodeCommands([]fsm.Command{activate("user.after")})
			if _, err := good.Write(putForward(nil, fwdFrame{id: 9, kind: fwdWrite, payload: payload})); err != nil {
				t.Fatal(err)
			}
			seq := <-f1.frames
			<-f2.frames
			f2.ack <- seq
			ans, err := readForward(bufio.NewReader(good))
			if err != nil {
				t.Fatal(err)
			}
			rs, err := fsm.DecodeResults(ans.payload)
			if ans.id != 9 || ans.kind != fwdAnswer || ans.index != seq || err != nil || len(rs) != 1 || rs[0].Code != fsm.CodeOK {
				t.Fatalf("answer %+v (results %+v, %v), want id 9 at batch %d", ans, rs, err, seq)
			}
			if _, ok := l.Store().Get("user.after"); !ok {
				t.Fatal("the leader does not hold the forwarded write")
			}
		})
	}
}
