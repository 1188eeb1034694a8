// Package watchfeed keeps a gateway.Replica in sync with a Rookery
// cluster through the gRPC Watch stream (client.WatchDirectory): a Reset
// loads a snapshot, Events apply changes, progress notices prove the
// replica current. The client hides node failures and resumes from the
// last revision; this package adds the gateway's notion of readiness.
package watchfeed

import (
	"context"
	"log/slog"
	"time"

	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/gateway"
)

// Config tunes a feed.
type Config struct {
	// StaleAfter is how long the feed may go without hearing from the
	// cluster (events or progress notices) before the replica is marked
	// not ready, so LMTP answers unknown recipients 451 instead of 550
	// while the directory may have changed unseen. It should be a few
	// times client.Config.WatchProgressInterval.
	StaleAfter time.Duration
	// RetryBackoff is the wait before restarting a watch that ended with
	// an error the client does not retry itself.
	RetryBackoff time.Duration
	Logger       *slog.Logger
}

// DefaultConfig marks the replica stale after 10 s without contact.
func DefaultConfig() Config {
	return Config{StaleAfter: 10 * time.Second, RetryBackoff: time.Second}
}

// Run follows the cluster until ctx is done. It returns nil then.
func Run(ctx context.Context, c *client.Client, rep *gateway.Replica, cfg Config) error {
	def := DefaultConfig()
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = def.StaleAfter
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = def.RetryBackoff
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "watchfeed")
	go staleness(ctx, rep, cfg.StaleAfter, log)

	apply := func(u client.Update) error {
		switch u := u.(type) {
		case *client.Reset:
			rep.Reset(u.Entries, u.Revision)
			log.Info("directory snapshot loaded", "entries", len(u.Entries), "revision", u.Revision)
		case *client.Events:
			rep.Apply(u.Events)
			rep.Progress(u.Revision)
		}
		if !rep.Ready() {
			rep.SetReady(true)
			log.Info("directory replica caught up; routing again", "revision", rep.Revision())
		}
		return nil
	}
	for {
		// Resume after what the replica holds; 0 asks for a snapshot.
		err := c.WatchDirectory(ctx, client.WatchOptions{FromRevision: rep.Revision(), Progress: true}, apply)
		if ctx.Err() != nil {
			rep.SetReady(false)
			return nil
		}
		rep.SetReady(false)
		log.Warn("directory watch ended; restarting", "err", err, "revision", rep.Revision())
		t := time.NewTimer(cfg.RetryBackoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// staleness marks the replica not ready when the feed has been silent for
// longer than after; the next update marks it ready again. While the
// directory stays out of reach (no endpoint answers) it warns again every
// 3×after, so the outage shows in the log and not only on /readyz.
func staleness(ctx context.Context, rep *gateway.Replica, after time.Duration, log *slog.Logger) {
	t := time.NewTicker(after / 4)
	defer t.Stop()
	start := time.Now()
	var lastWarn time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			st := rep.Stats()
			silent := st.SinceContact > after || (st.LastContact.IsZero() && now.Sub(start) > after)
			switch {
			case st.Ready && silent:
				rep.SetReady(false)
				lastWarn = now
				log.Warn("directory feed silent; replica marked not ready", "since", st.SinceContact, "revision", st.Revision)
			case !st.Ready && silent && now.Sub(lastWarn) >= 3*after:
				lastWarn = now
				since := st.SinceContact
				if st.LastContact.IsZero() {
					since = now.Sub(start)
				}
				log.Warn("directory unreachable: no endpoint has answered; logins and deliveries get temporary failures",
					"since", since.Round(time.Second), "revision", st.Revision)
			}
		}
	}
}
