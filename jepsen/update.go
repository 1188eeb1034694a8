package jepsen

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/rookery/rookery/internal/imapwire"
	"github.com/rookery/rookery/internal/mupdateclient"
)

// streamer follows the directory with MUPDATE UPDATE like a Cyrus
// frontend's mupdate slave: a dump, then streamed changes, with a NOOP
// barrier every few hundred milliseconds; when the connection breaks or a
// NOOP goes unanswered it reconnects (to the next node) and takes a new
// dump, as the slave resynchronises.
type streamer struct {
	name        string
	c           *Cluster
	h           *History
	home        int
	noopEvery   time.Duration
	noopTimeout time.Duration
	log         *slog.Logger

	mu          sync.Mutex
	sessions    []UpdateSession
	finalRev    uint64 // once set, NOOPs carry it: the stream must be there
	finalOK     bool
	established chan struct{}
	estOnce     sync.Once
}

func newStreamer(c *Cluster, h *History, home int, log *slog.Logger) *streamer {
	return &streamer{
		name: "update-" + c.Nodes[home].ID, c: c, h: h, home: home,
		noopEvery: 300 * time.Millisecond, noopTimeout: 8 * time.Second, log: log,
		established: make(chan struct{}),
	}
}

// Sessions returns the UPDATE sessions so far.
func (s *streamer) Sessions() []UpdateSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]UpdateSession, len(s.sessions))
	for i, u := range s.sessions {
		u.Dump = append([]Mailbox(nil), u.Dump...)
		u.Items = append([]UpdateItem(nil), u.Items...)
		out[i] = u
	}
	return out
}

func (s *streamer) run(ctx context.Context) {
	node := s.home
	for ctx.Err() == nil {
		if err := s.session(ctx, node); err != nil && ctx.Err() == nil {
			s.log.Debug("update stream ended", "streamer", s.name, "node", s.c.Nodes[node].ID, "err", err)
		}
		node = (node + 1) % len(s.c.Nodes)
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

func (s *streamer) session(ctx context.Context, i int) error {
	n := s.c.Nodes[i]
	cfg := mupdateclient.DefaultConfig()
	cfg.User, cfg.Password = s.c.User, s.c.Password
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	cl, err := mupdateclient.Dial(dctx, n.MupdateAddr, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer cl.Close()
	uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	dump, err := cl.Update(uctx)
	cancel()
	if err != nil {
		return err
	}
	sess := UpdateSession{Streamer: s.name, Node: n.ID}
	for _, e := range dump {
		m := Mailbox{Name: e.Name, State: StateActive, Loc: e.Location, ACL: e.ACL}
		if e.Reserved {
			m.State = StateReserved
		}
		sess.Dump = append(sess.Dump, m)
	}
	s.mu.Lock()
	s.sessions = append(s.sessions, sess)
	idx := len(s.sessions) - 1
	s.mu.Unlock()
	s.estOnce.Do(func() { close(s.established) })

	sctx, cancelSession := context.WithCancel(ctx)
	defer cancelSession()
	var (
		pmu     sync.Mutex
		pending = map[string]UpdateItem{} // NOOPs sent, not yet answered
	)
	readErr := make(chan error, 1)
	go func() {
		readErr <- s.read(sctx, cl, idx, &pmu, pending)
		cancelSession()
	}()
	end := func(err error) error {
		cl.Close()
		cancelSession()
		<-readErr
		s.mu.Lock()
		s.sessions[idx].End = fmt.Sprint(err)
		s.mu.Unlock()
		return err
	}

	sent := 0
	tick := time.NewTicker(s.noopEvery)
	defer tick.Stop()
	for {
		select {
		case <-sctx.Done():
			select {
			case err := <-readErr:
				readErr <- err
				return end(err)
			default:
			}
			return end(ctx.Err())
		case <-tick.C:
		}
		pmu.Lock()
		var oldest int64 = -1
		for _, p := range pending {
			if oldest < 0 || p.SentAt < oldest {
				oldest = p.SentAt
			}
		}
		if oldest >= 0 {
			pmu.Unlock()
			if time.Duration(s.h.Now()-oldest) > s.noopTimeout {
				return end(fmt.Errorf("NOOP unanswered for %v", s.noopTimeout))
			}
			continue
		}
		// Register before sending: the OK may be read before SendNoop
		// returns. mupdateclient numbers NOOP tags N1, N2, ...
		sent++
		want := "N" + strconv.Itoa(sent)
		s.mu.Lock()
		final := s.finalRev
		s.mu.Unlock()
		acked := s.h.MaxAcked() // read before sending: what the OK must cover
		pending[want] = UpdateItem{Kind: "noop", Acked: acked, FinalRev: final, SentAt: s.h.Now()}
		pmu.Unlock()
		tag, err := cl.SendNoop(sctx)
		if err != nil {
			return end(err)
		}
		if tag != want {
			return end(fmt.Errorf("NOOP tag %s, expected %s", tag, want))
		}
	}
}

// read appends what the stream delivers to session idx: changes, and the
// OK of each NOOP at the position it arrived.
func (s *streamer) read(ctx context.Context, cl *mupdateclient.Client, idx int, pmu *sync.Mutex, pending map[string]UpdateItem) error {
	for {
		r, err := cl.Next(ctx)
		if err != nil {
			return err
		}
		var it UpdateItem
		switch {
		case r.Tag == "U01" && r.Kind == imapwire.KindMailbox:
			it = UpdateItem{Kind: "mailbox", Name: r.Name, Loc: r.Location, ACL: r.ACL}
		case r.Tag == "U01" && r.Kind == imapwire.KindReserve:
			it = UpdateItem{Kind: "reserve", Name: r.Name, Loc: r.Location}
		case r.Tag == "U01" && r.Kind == imapwire.KindDelete:
			it = UpdateItem{Kind: "delete", Name: r.Name}
		case r.IsStatus():
			pmu.Lock()
			p, ok := pending[r.Tag]
			delete(pending, r.Tag)
			pmu.Unlock()
			if !ok {
				return fmt.Errorf("answer %s %s to no NOOP", r.Tag, r.Kind)
			}
			if r.Kind != imapwire.KindOK {
				return fmt.Errorf("NOOP %s: %s %q", r.Tag, r.Kind, r.Text)
			}
			it = p
			it.OKAt = s.h.Now()
		default:
			return fmt.Errorf("unexpected %s %s on the stream", r.Tag, r.Kind)
		}
		s.mu.Lock()
		s.sessions[idx].Items = append(s.sessions[idx].Items, it)
		if it.Kind == "noop" && s.finalRev != 0 && it.FinalRev == s.finalRev {
			s.finalOK = true
		}
		s.mu.Unlock()
	}
}

// final makes the stream prove, with a NOOP sent now, that it holds the
// final revision; it waits for that NOOP's OK.
func (s *streamer) final(ctx context.Context, rev uint64) error {
	s.mu.Lock()
	s.finalRev, s.finalOK = rev, false
	s.mu.Unlock()
	for {
		s.mu.Lock()
		ok := s.finalOK
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: no NOOP answered after healing: %w", s.name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
