package directory

import (
	"context"
	"errors"
	"time"

	"github.com/rookery/rookery/fsm"
)

// Filter selects the changes a follow delivers; the zero Filter selects
// all, set fields combine with AND. Location and server filters match the
// old or the new location, so a watcher of one server also sees mailboxes
// move away from it (Cyrus PARTIAL-UPDATE does the same for Servers).
type Filter struct {
	NamePrefix, LocationPrefix string
	Servers                    map[string]bool // server parts; nil: any
}

// Match reports whether ev passes the filter.
func (f *Filter) Match(ev *fsm.Event) bool {
	loc, prev := ev.Entry.Location, ev.PrevLocation
	return hasPrefix(ev.Entry.Name, f.NamePrefix) &&
		(hasPrefix(loc, f.LocationPrefix) || (prev != "" && hasPrefix(prev, f.LocationPrefix))) &&
		(f.Servers == nil || f.Servers[fsm.ServerOf(loc)] || (prev != "" && f.Servers[fsm.ServerOf(prev)]))
}

// MatchEntry reports whether an entry passes, for a stream's first dump.
func (f *Filter) MatchEntry(e *fsm.Entry) bool { return f.Match(&fsm.Event{Entry: *e}) }

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

// CompactRevision is the oldest revision a follow can start from here.
func (s *Service) CompactRevision() uint64 {
	var ce *fsm.CompactedError
	if _, err := s.local.EventsSince(0, 1); errors.As(err, &ce) {
		return ce.Compact
	}
	return 0
}

// Follower is the directory's one change stream: every MUPDATE UPDATE
// stream and every gRPC Watch is one. It reads this node's own applied
// history, so followers serve streams as well as the leader, and a slow
// reader holds up only itself: its memory does not grow with its lag, and
// once behind the kept history it gets KindCompacted and must start over.
type Follower struct {
	local  State
	filter Filter
	batch  int
	rev    uint64
}

// Follow returns a follower of the changes after revision from that pass
// f, read batch at a time (0: no bound).
func (s *Service) Follow(from uint64, f Filter, batch int) *Follower {
	return &Follower{local: s.local, filter: f, batch: batch, rev: from}
}

// Revision is the revision up to which every matching change was delivered.
func (f *Follower) Revision() uint64 { return f.rev }

// CatchUp hands every matching change after Revision to deliver, a batch
// per call (Revision already past it), until the history is exhausted.
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

// Sink is where Run delivers: Events each batch of matching changes;
// Progress, if set, after each Interval without any; and Calls are run
// between batches, so a front end's own replies keep their order with the
// changes (a MUPDATE NOOP's OK after every change before it).
type Sink struct {
	Events   func([]fsm.Event) error
	Progress func() error
	Interval time.Duration
	Calls    <-chan func() error
}

// Run delivers changes as soon as they are applied, until ctx ends (nil),
// a callback fails (its error) or the history is compacted (KindCompacted).
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
		err := f.CatchUp(s.Events)
		if err == nil {
			select {
			case <-changed:
			case <-tick:
				err = s.Progress()
			case call := <-s.Calls:
				err = call()
			case <-ctx.Done():
				return nil
			}
		}
		if err != nil {
			return err
		}
	}
}
