package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rookery/rookery/internal/mupdateclient"
)

// opTimeout bounds one operation so a stuck server shows up as errors
// instead of hanging the run.
const opTimeout = 30 * time.Second

// bench runs every phase against one target.
type bench struct {
	cfg    mupdateConfig
	target target
	index  int // of target in the run
	log    *slog.Logger
	probe  *probe

	mu      sync.Mutex
	created []string // active mailboxes this run made (FIND pool, cleanup)
}

// row is one line of a target's table.
type row struct {
	Phase string
	Conns int
	Round int // 0 when the run has one round, else 1..rounds (--rounds)
	Start time.Time
	S     *sample
	Use   spend // what the host and the target spent meanwhile
}

// label names the row in tables: its phase, and its round when the run
// has several.
func (r row) label() string {
	if r.Round == 0 {
		return r.Phase
	}
	return fmt.Sprintf("%s #%d", r.Phase, r.Round)
}

// targetReport is everything measured on one target.
type targetReport struct {
	Target  target
	Banner  string
	Rows    []row
	Stream  *streamResult
	Cleanup *sample
}

const (
	phaseCreateNew     = "create, new conn per op"
	phaseCreatePersist = "create, persistent conns"
	phaseFind          = "find, persistent conns"
)

// phase is one measurement: an operation at one connection count.
type phase struct {
	name  string
	conns int
	round int // 0 when the run has one round, else 1..rounds
}

// phaseList is every phase of a run in order: per round, per connection
// count, the three phases.
func phaseList(conns []int, rounds int) []phase {
	var ps []phase
	for round := 1; round <= rounds; round++ {
		label := round
		if rounds == 1 {
			label = 0
		}
		for _, n := range conns {
			for _, name := range []string{phaseCreateNew, phaseCreatePersist, phaseFind} {
				ps = append(ps, phase{name: name, conns: n, round: label})
			}
		}
	}
	return ps
}

// start logs in once and reads the banner.
func (b *bench) start(ctx context.Context) (*targetReport, error) {
	rep := &targetReport{Target: b.target}
	probe, err := b.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot log in: %w", err)
	}
	if banner := probe.Banner(); len(banner) > 0 {
		rep.Banner = banner[len(banner)-1]
	}
	_ = probe.Logout(ctx)
	return rep, nil
}

// measure runs phase p and adds its row to rep.
func (b *bench) measure(ctx context.Context, rep *targetReport, p phase) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fn := map[string]func(context.Context, int) *sample{
		phaseCreateNew: b.createNewConn, phaseCreatePersist: b.createPersistent, phaseFind: b.find,
	}[p.name]
	b.log.Info("phase", "phase", p.name, "conns", p.conns, "duration", b.cfg.Duration)
	start := time.Now()
	before := b.probe.read(ctx)
	s := fn(ctx, p.conns)
	use := since(before, b.probe.read(ctx))
	if s.firstErr != nil {
		b.log.Warn("phase had errors", "phase", p.name, "conns", p.conns, "errors", s.errors, "first", s.firstErr)
	}
	rep.Rows = append(rep.Rows, row{Phase: p.name, Conns: p.conns, Round: p.round, Start: start, Use: use, S: s})
	return nil
}

// finish runs the stream phase and the cleanup.
func (b *bench) finish(ctx context.Context, rep *targetReport) error {
	if b.cfg.StreamDuration > 0 {
		b.log.Info("phase", "phase", "stream delay", "duration", b.cfg.StreamDuration, "noop", b.cfg.StreamNoop)
		sr, err := b.stream(ctx)
		if err != nil {
			return fmt.Errorf("stream phase: %w", err)
		}
		rep.Stream = sr
	}
	if b.cfg.Cleanup {
		b.log.Info("cleanup", "mailboxes", len(b.created))
		rep.Cleanup = deleteNames(ctx, b.target.Addr, b.cfg.Client, b.created, 8)
	}
	return nil
}

func (b *bench) dial(ctx context.Context) (*mupdateclient.Client, error) {
	return mupdateclient.Dial(ctx, b.target.Addr, b.cfg.Client)
}

// name builds a unique mailbox name:
// user.bench<run>.<phase><conns>t<target>w<worker>i<n>. The target's index
// keeps names apart when two targets share a directory.
func (b *bench) name(phase string, conns, w, i int) string {
	return fmt.Sprintf("user.bench%s.%s%dt%dw%di%d", b.cfg.RunID, phase, conns, b.index, w, i)
}

func (b *bench) remember(names []string) {
	b.mu.Lock()
	b.created = append(b.created, names...)
	b.mu.Unlock()
}

// drive runs n workers until the phase duration is over. Each calls op
// repeatedly; a successful op's wall time is its latency.
func drive(ctx context.Context, n int, d time.Duration, op func(ctx context.Context, w, i int) error) *sample {
	deadline := time.Now().Add(d)
	parts := make([]*sample, n)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range n {
		parts[w] = &sample{window: d}
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				octx, cancel := context.WithTimeout(ctx, opTimeout)
				t0 := time.Now()
				err := op(octx, w, i)
				end := time.Now()
				cancel()
				if err != nil {
					parts[w].fail(err)
					time.Sleep(20 * time.Millisecond) // do not spin on a refusing server
					continue
				}
				parts[w].ok(end.Sub(t0))
				if !end.After(deadline) {
					parts[w].inWindow++
				}
			}
		})
	}
	wg.Wait()
	return merge(parts, time.Since(start))
}

// createNewConn is the Cyrus backend pattern (docs/mupdate.md §1, §10): every
// create opens a new TCP connection, reads the banner, AUTHENTICATEs, sends
// RESERVE then ACTIVATE, then LOGOUT without waiting for the answer.
func (b *bench) createNewConn(ctx context.Context, n int) *sample {
	made := make([][]string, n)
	s := drive(ctx, n, b.cfg.Duration, func(ctx context.Context, w, i int) error {
		name := b.name("n", n, w, i)
		c, err := b.dial(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Reserve(ctx, name, b.cfg.Location); err != nil {
			return err
		}
		if err := c.Activate(ctx, name, b.cfg.Location, b.cfg.ACL); err != nil {
			return err
		}
		made[w] = append(made[w], name)
		_ = c.SendLogout(ctx)
		return nil
	})
	for _, m := range made {
		b.remember(m)
	}
	return s
}

// pool keeps one authenticated connection per worker, redialling after an
// error (a failed connection is never reused).
type pool struct {
	b     *bench
	conns []*mupdateclient.Client
}

func (b *bench) newPool(ctx context.Context, n int) (*pool, error) {
	p := &pool{b: b, conns: make([]*mupdateclient.Client, n)}
	for i := range p.conns {
		c, err := b.dial(ctx)
		if err != nil {
			p.close()
			return nil, err
		}
		p.conns[i] = c
	}
	return p, nil
}

// do runs fn on worker w's connection; on error the connection is dropped.
func (p *pool) do(ctx context.Context, w int, fn func(*mupdateclient.Client) error) error {
	if p.conns[w] == nil {
		c, err := p.b.dial(ctx)
		if err != nil {
			return err
		}
		p.conns[w] = c
	}
	if err := fn(p.conns[w]); err != nil {
		p.conns[w].Close()
		p.conns[w] = nil
		return err
	}
	return nil
}

func (p *pool) close() {
	for _, c := range p.conns {
		if c != nil {
			c.Close()
		}
	}
}

// createPersistent is RESERVE+ACTIVATE pairs over n long-lived connections,
// one command outstanding per connection like Cyrus clients.
func (b *bench) createPersistent(ctx context.Context, n int) *sample {
	p, err := b.newPool(ctx, n)
	if err != nil {
		s := &sample{}
		s.fail(err)
		return s
	}
	defer p.close()
	made := make([][]string, n)
	s := drive(ctx, n, b.cfg.Duration, func(ctx context.Context, w, i int) error {
		name := b.name("p", n, w, i)
		return p.do(ctx, w, func(c *mupdateclient.Client) error {
			if err := c.Reserve(ctx, name, b.cfg.Location); err != nil {
				return err
			}
			if err := c.Activate(ctx, name, b.cfg.Location, b.cfg.ACL); err != nil {
				return err
			}
			made[w] = append(made[w], name)
			return nil
		})
	})
	for _, m := range made {
		b.remember(m)
	}
	return s
}

// find is FIND of random names this run created, over n persistent
// connections; an answer without the mailbox counts as an error.
func (b *bench) find(ctx context.Context, n int) *sample {
	b.mu.Lock()
	names := append([]string(nil), b.created...)
	b.mu.Unlock()
	if len(names) == 0 {
		s := &sample{}
		s.fail(fmt.Errorf("no mailboxes to FIND (every create failed)"))
		return s
	}
	p, err := b.newPool(ctx, n)
	if err != nil {
		s := &sample{}
		s.fail(err)
		return s
	}
	defer p.close()
	return drive(ctx, n, b.cfg.Duration, func(ctx context.Context, w, i int) error {
		name := names[rand.IntN(len(names))]
		return p.do(ctx, w, func(c *mupdateclient.Client) error {
			e, ok, err := c.Find(ctx, name)
			if err != nil {
				return err
			}
			if !ok || e.Reserved || e.Location != b.cfg.Location {
				return fmt.Errorf("FIND %s = %+v (found=%v), want active at %s", name, e, ok, b.cfg.Location)
			}
			return nil
		})
	})
}

// deleteNames DELETEs names over conns connections (cleanup).
func deleteNames(ctx context.Context, addr string, cfg mupdateclient.Config, names []string, conns int) *sample {
	conns = max(1, min(conns, len(names)))
	parts := make([]*sample, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conns {
		parts[w] = &sample{}
		wg.Go(func() {
			var c *mupdateclient.Client
			defer func() {
				if c != nil {
					_ = c.Logout(ctx)
				}
			}()
			for i := w; i < len(names) && ctx.Err() == nil; i += conns {
				if c == nil {
					var err error
					if c, err = mupdateclient.Dial(ctx, addr, cfg); err != nil {
						parts[w].fail(err)
						continue
					}
				}
				t0 := time.Now()
				if err := c.Delete(ctx, names[i]); err != nil {
					parts[w].fail(err)
					if !mupdateclient.IsStatus(err, "") {
						c.Close()
						c = nil
					}
					continue
				}
				parts[w].ok(time.Since(t0))
			}
		})
	}
	wg.Wait()
	return merge(parts, time.Since(start))
}
