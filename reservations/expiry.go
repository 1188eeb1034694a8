// Package reservations holds the optional expiry policy for stuck
// reservations: a RESERVE left behind by a crashed create or XFER makes a
// name unreachable and un-createable until someone removes it by hand.
package reservations

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
)

// Leader tells whether this node leads the cluster (*cluster.Node).
type Leader interface {
	IsLeader() bool
}

// Config tunes the expirer.
type Config struct {
	// TTL is the age after which a reservation is released. Zero turns
	// the policy off (the default: Cyrus itself never expires them).
	TTL time.Duration
	// Interval is how often the leader looks; zero picks TTL/4, at least
	// one second and at most a minute.
	Interval time.Duration
	// Identity is recorded as the issuer of the releases.
	Identity string
	Logger   *slog.Logger
}

func (c Config) interval() time.Duration {
	if c.Interval > 0 {
		return c.Interval
	}
	return min(max(c.TTL/4, time.Second), time.Minute)
}

// Run releases reservations older than cfg.TTL until ctx ends. Every node
// may run it; only the leader acts, and each release is a DELETE carrying
// the reservation's revision (fsm.Command.IfRevision), so a backend that
// activates or re-reserves the name first keeps it, whatever the timing.
func Run(ctx context.Context, n Leader, dir *directory.Service, cfg Config) error {
	if cfg.TTL <= 0 {
		return errors.New("reservations: expiry needs a positive TTL")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Identity == "" {
		cfg.Identity = "rookery-expiry"
	}
	t := time.NewTicker(cfg.interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if n.IsLeader() {
			Expire(ctx, dir, cfg, time.Now())
		}
	}
}

// maxPerRound bounds one round's proposal; the rest wait for the next.
const maxPerRound = 4096

// Expire releases, in one proposal, the reservations made before now-TTL
// and logs each outcome. It returns how many were released.
func Expire(ctx context.Context, dir *directory.Service, cfg Config, now time.Time) int {
	cutoff := now.Add(-cfg.TTL).UnixNano()
	var stale []fsm.Entry
	dir.Current().ScanReserved(func(e fsm.Entry) bool {
		if e.ReservedAt != 0 && e.ReservedAt < cutoff {
			stale = append(stale, e)
		}
		return len(stale) < maxPerRound
	})
	if len(stale) == 0 {
		return 0
	}
	cmds := make([]fsm.Command, len(stale))
	for i, e := range stale {
		cmds[i] = fsm.Command{Op: fsm.OpDelete, Name: e.Name, IfRevision: e.ModRevision}
	}
	res, err := dir.Write(ctx, directory.Caller{Name: cfg.Identity, Writer: true}, cmds...)
	if err != nil {
		cfg.Logger.Warn("reservation expiry: release failed; will retry", "reservations", len(cmds), "err", err)
		return 0
	}
	released := 0
	for i, r := range res {
		e := stale[i]
		age := now.Sub(time.Unix(0, e.ReservedAt)).Round(time.Second)
		switch k := directory.KindOf(r.Err); {
		case r.Err == nil:
			released++
			cfg.Logger.Info("released expired reservation", "mailbox", e.Name, "location", e.Location,
				"reserved_by", e.ReservedBy, "age", age, "reservation_revision", e.ModRevision, "revision", r.Revision)
		case k == directory.KindConflict || k == directory.KindNotFound:
			cfg.Logger.Info("expired reservation changed before its release; kept", "mailbox", e.Name, "reservation_revision", e.ModRevision)
		default:
			cfg.Logger.Warn("expired reservation not released", "mailbox", e.Name, "err", r.Err)
		}
	}
	return released
}
