package mupdatecompat

import (
	"context"
	"errors"

	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
)

// maxUpdateHosts is Cyrus's limit on PARTIAL-UPDATE host arguments.
const maxUpdateHosts = 30

// update runs UPDATE: a full (or per-host) dump from one consistent view,
// `OK "streaming starts"`, then every change applied after that view,
// streamed as soon as it is applied (docs/mupdate.md §7).
func (c *conn) update(tag string, r request) error {
	var f directory.Filter
	for _, h := range r.Hosts {
		if h == "" {
			return errBadArguments
		}
		if f.Servers == nil {
			f.Servers = make(map[string]bool, len(r.Hosts))
		}
		f.Servers[h] = true
	}
	// The barrier makes the dump include every write acknowledged before
	// UPDATE, wherever it was made.
	view, err := c.view()
	if err != nil {
		return err
	}
	ok := c.scan(tag, func(yield func(fsm.Entry) bool) {
		view.ScanName("", func(e fsm.Entry) bool {
			return (f.Servers != nil && !f.MatchEntry(&e)) || yield(e)
		})
	})
	if !ok {
		return errClosed
	}
	c.w.WriteReply(tag, "OK", "streaming starts")
	if c.flush() != nil {
		return errClosed
	}
	c.log.Info("mupdate stream started", "identity", c.id.Name, "revision", view.Revision(), "hosts", len(f.Servers))
	c.srv.countStream(f.Servers == nil)
	c.stream = newStreamer(c, tag, c.srv.dir.Follow(view.Revision(), f, c.cfg.StreamBatch))
	go c.stream.run()
	return nil
}

// streamReq asks the streamer to write something: a reply (kind set), or
// a raw line (line set) at once.
type streamReq struct {
	tag, kind, text string
	barrier         bool // write every change applied so far first
	last            bool // end the stream after this reply
	line            string
	ack             chan struct{} // closed once written and flushed
}

// streamer owns a streaming connection's output: it runs the directory's
// follower, and writes the session's replies in order with the changes.
type streamer struct {
	c      *conn
	tag    string
	f      *directory.Follower
	calls  chan func() error
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func newStreamer(c *conn, tag string, f *directory.Follower) *streamer {
	ctx, cancel := context.WithCancel(c.ctx)
	return &streamer{c: c, tag: tag, f: f, calls: make(chan func() error, 16), ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// send hands a request over; it gives up if the streamer has ended.
func (s *streamer) send(r streamReq) {
	select {
	case s.calls <- func() error { return s.handle(r) }:
	case <-s.done:
	}
}

// wait waits for the streamer to end.
func (s *streamer) wait() { <-s.done }

// stop ends the streamer without writing anything more.
func (s *streamer) stop() {
	s.cancel()
	<-s.done
}

// line writes a raw line ("+ go ahead") and waits until it is flushed.
func (s *streamer) line(l string) error {
	ack := make(chan struct{})
	s.send(streamReq{line: l, ack: ack})
	select {
	case <-ack:
		return nil
	case <-s.done:
		return errStreamEnded
	}
}

var errStreamEnded = errors.New("mupdatecompat: stream ended")

// barrier runs NOOP on a stream (docs/mupdate.md §8): it proves that the local
// store holds every write committed before the NOOP, then has the streamer
// write every change up to that point before `OK "Noop done"`. If the proof
// does not come within BarrierTimeout, the connection is closed so that the
// Cyrus slave reconnects, possibly to a node that can answer.
func (s *streamer) barrier(tag string) error {
	c := s.c
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.BarrierTimeout)
	err := c.srv.dir.Barrier(ctx)
	cancel()
	if err != nil {
		c.log.Warn("mupdate NOOP barrier failed; closing the stream so the slave reconnects",
			"identity", c.id.Name, "err", err, "bound", c.cfg.BarrierTimeout)
		c.final("*", "BYE", "directory unavailable, reconnect")
		return errClosed
	}
	s.send(streamReq{tag: tag, kind: "OK", text: "Noop done", barrier: true})
	return nil
}

func (s *streamer) run() {
	defer close(s.done)
	defer s.c.srv.streams.Add(-1)
	defer s.c.close() // wakes the session goroutine if it is reading
	err := s.f.Run(s.ctx, directory.Sink{Events: s.events, Calls: s.calls})
	if directory.KindOf(err) == directory.KindCompacted {
		// Fallen behind the kept history (or the store was replaced by a
		// snapshot): only a full resync can repair that, and the Cyrus
		// slave does one when the connection drops.
		s.c.log.Warn("mupdate stream cannot continue; closing so the slave resyncs",
			"identity", s.c.id.Name, "revision", s.f.Revision(), "err", err)
		s.c.w.WriteReply("*", "BYE", "stream history compacted, resynchronize")
		s.c.flush()
	}
}

// events writes one batch of changes and flushes it.
func (s *streamer) events(evs []fsm.Event) error {
	for i := range evs {
		s.c.writeEvent(s.tag, &evs[i])
	}
	return s.c.flush()
}

// handle writes one request; an error ends the stream.
func (s *streamer) handle(r streamReq) error {
	if r.line != "" {
		s.c.w.WriteLine(r.line)
		err := s.c.flush()
		close(r.ack)
		return err
	}
	if r.barrier {
		if err := s.f.CatchUp(s.events); err != nil {
			return err
		}
	}
	s.c.w.WriteReply(r.tag, r.kind, r.text)
	if err := s.c.flush(); err != nil || r.last {
		return errStreamEnded
	}
	return nil
}

// writeEvent writes one change as the Cyrus master does: MAILBOX for an
// active entry, RESERVE for a reserved one, DELETE for a removed one.
func (c *conn) writeEvent(tag string, ev *fsm.Event) {
	if ev.Type == fsm.EventDelete {
		c.w.WriteData(tag, "DELETE", ev.Entry.Name)
		return
	}
	c.writeEntry(tag, &ev.Entry)
}

// writeEntry writes an entry as a FIND, LIST or UPDATE data line.
func (c *conn) writeEntry(tag string, e *fsm.Entry) error {
	if e.State == fsm.StateActive {
		return c.w.WriteData(tag, "MAILBOX", e.Name, e.Location, e.ACL)
	}
	return c.w.WriteData(tag, "RESERVE", e.Name, e.Location)
}
