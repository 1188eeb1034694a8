package client

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/api"
	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Update is what WatchDirectory delivers: a *Reset or an *Events.
type Update interface {
	// Rev is the revision the caller's state is at once it has applied
	// the update; resuming from it later continues without gap.
	Rev() uint64
}

// Reset replaces the caller's whole state (restricted to the watch's
// filter) with Entries, the directory at Revision. It is delivered first
// when a watch starts without a revision, and whenever the history needed
// to resume has been compacted.
type Reset struct {
	Entries  []fsm.Entry // dbname order
	Revision uint64
}

// Events are changes in revision order, each exactly once. An Events with
// no events is a progress notice (only with WatchOptions.Progress): every
// matching change up to Revision has been delivered.
type Events struct {
	Events   []fsm.Event
	Revision uint64
}

// Rev implements Update.
func (r *Reset) Rev() uint64 { return r.Revision }

// Rev implements Update.
func (e *Events) Rev() uint64 { return e.Revision }

// WatchOptions selects what WatchDirectory follows.
type WatchOptions struct {
	// FromRevision resumes after a revision the caller already has. Zero
	// starts with a Reset of the current state, unless FromNow.
	FromRevision uint64
	// FromNow (with FromRevision 0) skips the initial Reset and delivers
	// only changes made after the watch started.
	FromNow bool
	// FromOldest (with FromRevision 0) skips the initial Reset and
	// delivers every change the serving node still keeps, oldest first.
	FromOldest bool
	// At most one of NamePrefix and LocationPrefix. A location filter
	// also matches changes whose previous location matched.
	NamePrefix     string
	LocationPrefix string
	// Progress delivers progress notices as empty Events.
	Progress bool
}

// WatchDirectory follows the directory until ctx ends or fn returns an
// error (which it returns). Node failures, restarts, leader changes and
// stalled streams are hidden: it reconnects to any endpoint and resumes
// after the last revision delivered, so fn sees every change once, in
// order. When the history to resume from is gone it re-lists the
// directory at one revision (no older than what fn has seen), delivers a
// Reset and continues from there.
func (c *Client) WatchDirectory(ctx context.Context, opts WatchOptions, fn func(Update) error) error {
	if opts.NamePrefix != "" && opts.LocationPrefix != "" {
		return status.Error(codes.InvalidArgument, "client: watch: at most one of NamePrefix and LocationPrefix")
	}
	w := &watcher{
		c:         c,
		opts:      opts,
		fn:        fn,
		rev:       opts.FromRevision,
		needReset: opts.FromRevision == 0 && !opts.FromNow && !opts.FromOldest,
		fromNow:   opts.FromRevision == 0 && (opts.FromNow || opts.FromOldest),
		idx:       int(c.preferred.Load()),
		backoff:   c.cfg.BackoffBase,
	}
	return w.run(ctx)
}

// watcher is the state of one WatchDirectory call.
type watcher struct {
	c         *Client
	opts      WatchOptions
	fn        func(Update) error
	rev       uint64 // everything up to rev has been delivered
	needReset bool
	fromNow   bool
	idx       int // endpoint in use
	backoff   time.Duration
}

// callbackError carries fn's error out unchanged.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

var errStalled = errors.New("watch stream silent for too long")

func (w *watcher) run(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if w.needReset {
			err = w.reset(ctx)
			if err == nil {
				w.needReset = false
				continue
			}
		} else {
			err = w.stream(ctx, w.c.eps[w.idx])
		}
		var cb callbackError
		switch {
		case errors.As(err, &cb):
			return cb.err
		case ctx.Err() != nil:
			return ctx.Err()
		case isCompacted(err):
			w.c.cfg.Logger.Info("watch history compacted, re-listing", "endpoint", w.c.eps[w.idx].addr, "revision", w.rev)
			w.needReset = true
			continue
		case permanent(err):
			return err
		}
		w.c.cfg.Logger.Debug("watch interrupted, reconnecting", "endpoint", w.c.eps[w.idx].addr, "revision", w.rev, "err", err)
		w.idx = (w.idx + 1) % len(w.c.eps)
		if err := sleep(ctx, w.backoff); err != nil {
			return err
		}
		w.backoff = min(2*w.backoff, w.c.cfg.BackoffMax)
	}
}

// stream follows one Watch stream until it fails.
func (w *watcher) stream(ctx context.Context, ep *endpoint) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := &rookeryv1.WatchRequest{
		FromRevision:       w.rev,
		FromOldest:         w.opts.FromOldest && w.rev == 0,
		NamePrefix:         w.opts.NamePrefix,
		LocationPrefix:     w.opts.LocationPrefix,
		ProgressIntervalMs: uint32(w.c.cfg.WatchProgressInterval / time.Millisecond),
	}
	stalled := make(chan struct{})
	dog := time.AfterFunc(w.c.cfg.WatchStallTimeout, func() { close(stalled); cancel() })
	defer dog.Stop()
	st, err := ep.dir.Watch(sctx, req)
	if err != nil {
		return err
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			select {
			case <-stalled:
				return errStalled
			default:
				return err
			}
		}
		if !dog.Stop() {
			return errStalled // fired while the message was in flight
		}
		w.backoff = w.c.cfg.BackoffBase
		w.c.preferred.Store(int64(w.idx))
		// The watchdog is off while fn runs: a slow consumer is not a
		// stalled server.
		if err := w.deliver(resp); err != nil {
			return err
		}
		dog.Reset(w.c.cfg.WatchStallTimeout)
	}
}

// deliver hands one response to fn, dropping anything at or below the
// revision already delivered (a resumed stream never repeats a change).
func (w *watcher) deliver(resp *rookeryv1.WatchResponse) error {
	if w.fromNow {
		// The first message of a "from now" (or "from oldest") stream
		// names the start.
		w.fromNow = false
		w.rev = max(w.rev, resp.GetRevision())
	}
	evs := make([]fsm.Event, 0, len(resp.GetEvents()))
	for _, p := range resp.GetEvents() {
		ev := api.EventFromProto(p)
		if ev.Revision <= w.rev {
			continue
		}
		if w.unfiltered() && len(evs) == 0 && ev.Revision != w.rev+1 {
			// Revisions are dense: a gap is a server fault, and only a
			// fresh listing repairs the caller's state.
			w.c.cfg.Logger.Error("watch gap detected, re-listing", "after", w.rev, "got", ev.Revision)
			return compactedErr
		}
		evs = append(evs, ev)
	}
	next := max(w.rev, resp.GetRevision())
	if len(evs) > 0 {
		next = max(next, evs[len(evs)-1].Revision)
	}
	if len(evs) == 0 && (!w.opts.Progress || len(resp.GetEvents()) > 0) {
		w.rev = next
		return nil
	}
	if err := w.fn(&Events{Events: evs, Revision: next}); err != nil {
		return callbackError{err}
	}
	w.rev = next
	return nil
}

func (w *watcher) unfiltered() bool { return w.opts.NamePrefix == "" && w.opts.LocationPrefix == "" }

// reset lists the directory (within the filter) at one revision no older
// than what was already delivered, and hands it to fn as a Reset.
func (w *watcher) reset(ctx context.Context) error {
	opts := ListOptions{NamePrefix: w.opts.NamePrefix, LocationPrefix: w.opts.LocationPrefix, Stale: true, pageSize: resetPageSize}
	var (
		entries []fsm.Entry
		rev     uint64
	)
	err := w.c.do(ctx, readLong, func(ctx context.Context, ep *endpoint) error {
		if w.rev > 0 {
			// A lagging node must not move the caller back in time.
			wctx, cancel := context.WithTimeout(ctx, w.c.cfg.AttemptTimeout)
			_, err := ep.dir.WaitRevision(wctx, &rookeryv1.WaitRevisionRequest{Revision: w.rev})
			cancel()
			if err != nil {
				return err
			}
		}
		entries = entries[:0]
		var err error
		rev, err = w.c.listOn(ctx, ep, opts, func(e fsm.Entry) error {
			entries = append(entries, e)
			return nil
		})
		return err
	})
	if err != nil {
		return err
	}
	if err := w.fn(&Reset{Entries: entries, Revision: rev}); err != nil {
		return callbackError{err}
	}
	w.rev = rev
	w.fromNow = false
	return nil
}

// resetPageSize is the largest page the server gives: a reset of a big
// directory then takes fewer round trips.
const resetPageSize = 10000

// compactedErr asks run for a reset.
var compactedErr = status.Error(codes.FailedPrecondition, "client: watch needs a re-list")

func isCompacted(err error) bool {
	if errors.Is(err, compactedErr) {
		return true
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return false
	}
	for _, d := range st.Details() {
		if _, ok := d.(*rookeryv1.WatchCompacted); ok {
			return true
		}
	}
	return false
}

// permanent errors would fail the same way on every node.
func permanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.Unauthenticated, codes.PermissionDenied, codes.Unimplemented:
		return true
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
