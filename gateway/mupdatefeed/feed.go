// Package mupdatefeed keeps a gateway.Replica in sync with a MUPDATE
// server's UPDATE stream, the way a Cyrus frontend's mupdate slave does.
//
// It is the interim directory feed until the gRPC Watch client is wired
// to the replica, and it lets a gateway front an unmodified Cyrus murder
// (following the real mupdate master) today. MUPDATE has no revisions, so
// the feed numbers changes itself: revisions here are local counters that
// mean nothing outside this process.
package mupdatefeed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/gateway"
	"github.com/rookery/rookery/internal/imapwire"
	"github.com/rookery/rookery/internal/mupdateclient"
)

// Config tunes a Feed.
type Config struct {
	Addr     string // MUPDATE server host:port
	User     string
	Password string
	// NoopInterval is how often the feed checks the stream is alive; a
	// stream silent for three intervals is reconnected.
	NoopInterval time.Duration
	// MaxBackoff caps the wait between reconnects.
	MaxBackoff time.Duration
	Logger     *slog.Logger
}

// DefaultConfig returns a 5 s liveness check and a 30 s reconnect cap.
func DefaultConfig() Config {
	return Config{NoopInterval: 5 * time.Second, MaxBackoff: 30 * time.Second}
}

// Feed follows one MUPDATE server.
type Feed struct {
	cfg Config
	rep *gateway.Replica
	log *slog.Logger
	rev uint64
}

// New returns a feed that will keep rep in sync.
func New(cfg Config, rep *gateway.Replica) *Feed {
	if cfg.NoopInterval <= 0 {
		cfg.NoopInterval = DefaultConfig().NoopInterval
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultConfig().MaxBackoff
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Feed{cfg: cfg, rep: rep, log: log.With("component", "mupdatefeed", "server", cfg.Addr)}
}

// Run follows the server until ctx is done, reconnecting with backoff.
// While disconnected the replica is marked not ready (it keeps its
// entries, so known users still route).
func (f *Feed) Run(ctx context.Context) error {
	if f.cfg.Addr == "" {
		return ErrNoServer
	}
	backoff := 100 * time.Millisecond
	for {
		err := f.session(ctx)
		f.rep.SetReady(false)
		if ctx.Err() != nil {
			return nil
		}
		f.log.Warn("MUPDATE stream lost; reconnecting", "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, f.cfg.MaxBackoff)
	}
}

// session runs one connection: UPDATE, load the dump, apply the stream.
func (f *Feed) session(ctx context.Context) error {
	mc := mupdateclient.DefaultConfig()
	mc.User, mc.Password = f.cfg.User, f.cfg.Password
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, err := mupdateclient.Dial(dctx, f.cfg.Addr, mc)
	if err != nil {
		cancel()
		return err
	}
	defer c.Close()
	dump, err := c.Update(dctx)
	cancel()
	if err != nil {
		return err
	}
	entries := make([]fsm.Entry, len(dump))
	for i, e := range dump {
		entries[i] = toEntry(e.Name, e.Location, e.ACL, e.Reserved)
	}
	f.rev++
	f.rep.Reset(entries, f.rev)
	f.rep.SetReady(true)
	f.log.Info("MUPDATE dump loaded", "entries", len(entries))

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go f.noops(sctx, c)
	for {
		rctx, cancel := context.WithTimeout(sctx, 3*f.cfg.NoopInterval)
		r, err := c.Next(rctx)
		cancel()
		if err != nil {
			return err
		}
		if ev, ok := f.event(r); ok {
			f.rep.Apply([]fsm.Event{ev})
		} else if r.IsStatus() {
			f.rep.ObserveHead(f.rev)
			if r.Kind != imapwire.KindOK {
				return fmt.Errorf("mupdate: %s %s", r.Kind, r.Text)
			}
		}
	}
}

func (f *Feed) noops(ctx context.Context, c *mupdateclient.Client) {
	t := time.NewTicker(f.cfg.NoopInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := c.SendNoop(ctx); err != nil {
				return
			}
		}
	}
}

// event turns a streamed MAILBOX, RESERVE or DELETE into a replica event.
func (f *Feed) event(r imapwire.Response) (fsm.Event, bool) {
	var ev fsm.Event
	switch r.Kind {
	case imapwire.KindMailbox:
		ev = fsm.Event{Type: fsm.EventPut, Op: fsm.OpActivate, Entry: toEntry(r.Name, r.Location, r.ACL, false)}
	case imapwire.KindReserve:
		ev = fsm.Event{Type: fsm.EventPut, Op: fsm.OpReserve, Entry: toEntry(r.Name, r.Location, "", true)}
	case imapwire.KindDelete:
		ev = fsm.Event{Type: fsm.EventDelete, Op: fsm.OpDelete, Entry: fsm.Entry{Name: r.Name}}
	default:
		return fsm.Event{}, false
	}
	f.rev++
	ev.Revision = f.rev
	ev.Entry.ModRevision = f.rev
	return ev, true
}

func toEntry(name, location, acl string, reserved bool) fsm.Entry {
	st := fsm.StateActive
	if reserved {
		st = fsm.StateReserved
	}
	return fsm.Entry{Name: name, Location: location, ACL: acl, State: st}
}

// ErrNoServer is returned by Run when Config.Addr is empty.
var ErrNoServer = errors.New("mupdatefeed: no server address")
