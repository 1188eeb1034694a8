package mupdatecompat

import (
	"context"
	"errors"
	"sync"

	"github.com/rookery/rookery/fsm"
	wire "github.com/rookery/rookery/internal/mupdatewire"
)

// maxUpdateHosts is Cyrus's limit on PARTIAL-UPDATE host arguments.
const maxUpdateHosts = 30

// update runs UPDATE: a full (or per-host) dump from one consistent view,
// `OK "streaming starts"`, then every change applied after that view,
// streamed as soon as it is applied (docs/mupdate.md §7).
func (c *conn) update(cmd *wire.Command) bool {
	var hosts map[string]bool
	for _, a := range cmd.Args {
		if a.Value == "" {
			c.reply(cmd.Tag, "BAD", "Badly formed arguments")
			return true
		}
		if hosts == nil {
			hosts = make(map[string]bool, len(cmd.Args))
		}
		hosts[a.Value] = true
	}
	// The barrier makes the dump include every write acknowledged before
	// UPDATE, wherever it was made.
	if !c.sync(cmd.Tag) {
		return true
	}
	view := c.srv.dir.Store().View()
	ok := c.scan(cmd.Tag, func(yield func(fsm.Entry) bool) {
		view.ScanName("", func(e fsm.Entry) bool {
			if hosts != nil && !hosts[fsm.ServerOf(e.Location)] {
				return true
			}
			return yield(e)
		})
	})
	if !ok {
		return false
	}
	c.w.WriteReply(cmd.Tag, "OK", "streaming starts")
	if c.flush() != nil {
		return false
	}
	c.log.Info("mupdate stream started", "identity", c.id.Name, "revision", view.Revision(), "hosts", len(hosts))
	c.srv.countStream(hosts == nil)
	c.stream = newStreamer(c, cmd.Tag, hosts, view.Revision())
	go c.stream.run()
	return true
}

// streamReq asks the streamer to write something. A reply (kind set) is
// written after every event up to upTo; a raw line (line set) at once.
type streamReq struct {
	tag, kind, text string
	upTo            uint64
	last            bool // end the stream after this reply
	line            string
	ack             chan struct{} // closed once written and flushed
}

// streamer owns a streaming connection's output. It reads the directory's
// change history itself, so a slow slave only ever holds up its own
// goroutine, and memory per stream does not grow with its lag: a slave that
// falls behind the kept history is disconnected and resynchronises.
type streamer struct {
	c     *conn
	tag   string
	hosts map[string]bool // nil: every change
	rev   uint64          // last revision handled

	reqs     chan streamReq
	stopping chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

func newStreamer(c *conn, tag string, hosts map[string]bool, rev uint64) *streamer {
	return &streamer{
		c: c, tag: tag, hosts: hosts, rev: rev,
		reqs:     make(chan streamReq, 16),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// send hands a request over; it gives up if the streamer has ended.
func (s *streamer) send(r streamReq) {
	select {
	case s.reqs <- r:
	case <-s.done:
	}
}

// wait waits for the streamer to end.
func (s *streamer) wait() { <-s.done }

// stop ends the streamer without writing anything more.
func (s *streamer) stop() {
	s.stopOnce.Do(func() { close(s.stopping) })
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
func (s *streamer) barrier(tag string) bool {
	c := s.c
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.BarrierTimeout)
	err := c.srv.dir.Sync(ctx)
	cancel()
	if err != nil {
		c.log.Warn("mupdate NOOP barrier failed; closing the stream so the slave reconnects",
			"identity", c.id.Name, "err", err, "bound", c.cfg.BarrierTimeout)
		c.final("*", "BYE", "directory unavailable, reconnect")
		return false
	}
	s.send(streamReq{tag: tag, kind: "OK", text: "Noop done", upTo: c.srv.dir.Store().Revision()})
	return true
}

func (s *streamer) run() {
	defer close(s.done)
	defer s.c.srv.streams.Add(-1)
	defer s.c.close() // wakes the session goroutine if it is reading
	store := s.c.srv.dir.Store()
	for {
		changed := store.Changed()
		if !s.catchUp(0) {
			return
		}
		select {
		case <-changed:
		case r := <-s.reqs:
			if !s.handle(r) {
				return
			}
		case <-s.stopping:
			return
		case <-s.c.srv.shutdown:
			s.c.w.WriteReply("*", "BYE", "Server shutting down")
			s.c.flush()
			return
		case <-s.c.ctx.Done():
			return
		}
	}
}

// handle writes one request; false ends the stream.
func (s *streamer) handle(r streamReq) bool {
	if r.line != "" {
		s.c.w.WriteLine(r.line)
		err := s.c.flush()
		close(r.ack)
		return err == nil
	}
	if r.upTo > s.rev && !s.catchUp(r.upTo) {
		return false
	}
	s.c.w.WriteReply(r.tag, r.kind, r.text)
	return s.c.flush() == nil && !r.last
}

// catchUp writes the changes after s.rev, at least up to upTo, in batches,
// flushing after each. false ends the stream.
func (s *streamer) catchUp(upTo uint64) bool {
	store := s.c.srv.dir.Store()
	for {
		evs, err := store.EventsSince(s.rev, s.c.cfg.StreamBatch)
		if err != nil {
			// Fallen behind the kept history (or the store was replaced
			// by a snapshot): only a full resync can repair that, and the
			// Cyrus slave does one when the connection drops.
			s.c.log.Warn("mupdate stream cannot continue; closing so the slave resyncs",
				"identity", s.c.id.Name, "revision", s.rev, "err", err)
			s.c.w.WriteReply("*", "BYE", "stream history compacted, resynchronize")
			s.c.flush()
			return false
		}
		if len(evs) == 0 {
			if s.rev < upTo {
				s.c.log.Warn("mupdate stream: store revision went backwards", "identity", s.c.id.Name, "revision", s.rev, "want", upTo)
			}
			return true
		}
		for i := range evs {
			if s.match(&evs[i]) {
				s.c.writeEvent(s.tag, &evs[i])
			}
			s.rev = evs[i].Revision
		}
		if s.c.flush() != nil {
			return false
		}
	}
}

// match applies the PARTIAL-UPDATE filter: an event is sent when its old or
// its new server part is one of the hosts, as Cyrus does.
func (s *streamer) match(ev *fsm.Event) bool {
	if s.hosts == nil {
		return true
	}
	return s.hosts[fsm.ServerOf(ev.Entry.Location)] ||
		(ev.PrevLocation != "" && s.hosts[fsm.ServerOf(ev.PrevLocation)])
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
