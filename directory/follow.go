package directory

import (
	"context"
	"errors"
	"time"

	"github.com/rookery/rookery/fsm"
)

// Filter selects the changes a follow delivers. The zero Filter selects
// every change; set fields combine with AND.
type Filter struct {
	// NamePrefix: the name starts with it.
	NamePrefix string
	// LocationPrefix: the old or the new location starts with it, so that
	// a watcher of one server also sees mailboxes move away from it.
	LocationPrefix string
	// Servers (MUPDATE PARTIAL-UPDATE): the server part of the old or the
	// new location is one of them, as Cyrus does. nil: any server.
	Servers map[string]bool
}

// Match reports whether ev passes the filter.
func (f *Filter) Match(ev *fsm.Event) bool {
	if f.NamePrefix != "" && !hasPrefix(ev.Entry.Name, f.NamePrefix) {
		return false
	}
	if f.LocationPrefix != "" && !hasPrefix(ev.Entry.Location, f.LocationPrefix) &&
		(ev.PrevLocation == "" || !hasPrefix(ev.PrevLocation, f.LocationPrefix)) {
		return false
	}
	return f.Servers == nil || f.Servers[fsm.ServerOf(ev.Entry.Location)] ||
		(ev.PrevLocation != "" && f.Servers[fsm.ServerOf(ev.PrevLocation)])
}

// MatchEntry reports whether an entry passes the filter, for the dump a
// stream starts with.
func (f *Filter) MatchEntry(e *fsm.Entry) bool {
	return f.Match(&fsm.Event{Entry: *e})
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

// CompactRevision is the oldest revision a follow can start from on this
// node (0 while the whole history is kept).
func (s *Service) CompactRevision() uint64 {
	var ce *fsm.CompactedError
	if _, err := s.local.EventsSince(0, 1); errors.As(err, &ce) {
		return ce.Compact
	}
	return 0
}

// Follower is the one change stream of the directory: every MUPDATE UPDATE
// stream and every gRPC Watch is one. It reads this node's own applied
// history from a revision on, so followers serve streams as well as the
// leader does, and a slow reader holds up only its own goroutine: memory
// does not grow with its lag, and one that falls behind the kept history
// gets a KindCompacted error and must start over from a fresh view.
type Follower struct {
	local  State
	filter Filter
	batch  int
	rev    uint64
}

// Follow returns a follower delivering the changes after revision from
// that pass f, reading at most batch changes at a time (0: no bound).
func (s *Service) Follow(from uint64, f Filter, batch int) *Follower {
	return &Follower{local: s.local, filter: f, batch: batch, rev: from}
}

// Revision is the revision up to which every matching change has been
// delivered.
func (f *Follower) Revision() uint64 { return f.rev }

// CatchUp delivers every matching change after Revision, one call of
// deliver per batch that has any, until the kept history is exhausted.
// Revision has advanced past the batch when deliver is called.
func (f *Follower) CatchUp(deliver func([]fsm.Event) error) error {
	for {
		evs, err := f.local.EventsSince(f.rev, f.batch)
		if err != nil {
			return &Error{Kind: KindCompacted, Err: err}
		}
		if len(evs) == 0 {
			return nil
		}
		out := evs[:0] // evs is this call's own copy
		for i := range evs {
			if f.filter.Match(&evs[i]) {
				out = append(out, evs[i])
			}
		}
		f.rev = evs[len(evs)-1].Revision
		if len(out) > 0 {
			if err := deliver(out); err != nil {
				return err
			}
		}
	}
}

// Sink is where Run delivers.
type Sink struct {
	// Events receives each batch of matching changes.
	Events func([]fsm.Event) error
	// Progress, when set, is called after every Interval without changes
	// delivered.
	Progress func() error
	Interval time.Duration
	// Calls runs functions on the follow's goroutine between batches:
	// how a front end writes its own replies in order with the changes
	// (a MUPDATE NOOP's OK after every change before it).
	Calls <-chan func() error
}

// Run delivers changes as soon as they are applied until ctx ends (nil)
// or a delivery, progress or call fails (its error), or the follower falls
// behind the kept history (a KindCompacted error).
func (f *Follower) Run(ctx context.Context, s Sink) error {
	var tick <-chan time.Time
	if s.Progress != nil {
		t := time.NewTicker(s.Interval)
		defer t.Stop()
		tick = t.C
		events := s.Events
		s.Events = func(evs []fsm.Event) error {
			t.Reset(s.Interval)
			return events(evs)
		}
	}
	for {
		changed := f.local.Changed()
		if err := f.CatchUp(s.Events); err != nil {
			return err
		}
		var err error
		select {
		case <-changed:
		case <-tick:
			err = s.Progress()
		case call := <-s.Calls:
			err = call()
		case <-ctx.Done():
			return nil
		}
		if err != nil {
			return err
		}
	}
}
