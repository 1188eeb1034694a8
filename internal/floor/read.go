package floor

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/rookery/rookery/fsm"
)

// LinearizableRead returns after one follower answered a ping sent after
// the call: the round trip a linearizable read cannot avoid without a
// lease. (The leader applies each batch as it commits, so nothing is left
// to wait for after it.) Concurrent reads share a ping.
func (l *Leader) LinearizableRead(ctx context.Context) error {
	w := &waiter{ch: make(chan struct{})}
	for _, p := range l.peers {
		p.ping.add(w)
	}
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-l.ctx.Done():
		return errors.New("floor: closed")
	}
}

// LinearizableGet reads name after LinearizableRead.
func (l *Leader) LinearizableGet(ctx context.Context, name string) (fsm.Entry, bool, error) {
	if err := l.LinearizableRead(ctx); err != nil {
		return fsm.Entry{}, false, err
	}
	e, ok := l.store.Get(name)
	return e, ok, nil
}

// WaitRevision waits until the leader's store has applied rev.
func (l *Leader) WaitRevision(ctx context.Context, rev uint64) error {
	return waitStore(ctx, l.store, func() bool { return l.store.Revision() >= rev })
}

// waitStore waits until reached holds, checking it again at each change
// of s's applied index (which every new revision comes with).
func waitStore(ctx context.Context, s *fsm.Store, reached func() bool) error {
	for {
		changed := s.Changed()
		if reached() {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// CheckReads is nil: the floor has no damaged state to refuse.
func (l *Leader) CheckReads() error { return nil }

// waiter is one read waiting for the first of the followers' pongs.
type waiter struct {
	once sync.Once
	ch   chan struct{}
}

func (w *waiter) release() { w.once.Do(func() { close(w.ch) }) }

// pinger sends one ping at a time to a follower for every read that
// arrived before it was sent.
type pinger struct {
	c    net.Conn
	kick chan struct{}

	mu      sync.Mutex
	waiting []*waiter
}

func newPinger(c net.Conn) *pinger { return &pinger{c: c, kick: make(chan struct{}, 1)} }

func (p *pinger) add(w *waiter) {
	p.mu.Lock()
	p.waiting = append(p.waiting, w)
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *pinger) run(ctx context.Context) {
	var b [8]byte
	for id := uint64(1); ; id++ {
		select {
		case <-p.kick:
		case <-ctx.Done():
			return
		}
		p.mu.Lock()
		ws := p.waiting
		p.waiting = nil
		p.mu.Unlock()
		if len(ws) == 0 {
			continue
		}
		binary.BigEndian.PutUint64(b[:], id)
		if _, err := p.c.Write(b[:]); err != nil {
			return
		}
		if _, err := io.ReadFull(p.c, b[:]); err != nil {
			return
		}
		for _, w := range ws {
			w.release()
		}
	}
}
