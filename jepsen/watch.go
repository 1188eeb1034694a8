package jepsen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// watcher follows the directory with gRPC Watch across faults the way a
// gateway does: one stream at a time, resumed after the last revision it
// got, moving to the next node when the stream breaks or falls silent.
type watcher struct {
	name  string
	c     *Cluster
	home  int
	conns []*grpc.ClientConn
	stall time.Duration
	log   *slog.Logger

	mu          sync.Mutex
	sessions    []WatchSession
	last        uint64
	established chan struct{}
	estOnce     sync.Once
}

func newWatcher(c *Cluster, home int, stall time.Duration, log *slog.Logger) (*watcher, error) {
	w := &watcher{name: "watch-" + c.Nodes[home].ID, c: c, home: home, stall: stall, log: log, established: make(chan struct{})}
	for _, n := range c.Nodes {
		cc, err := dialNode(n, c.Token())
		if err != nil {
			w.close()
			return nil, err
		}
		w.conns = append(w.conns, cc)
	}
	return w, nil
}

func (w *watcher) close() {
	for _, cc := range w.conns {
		cc.Close()
	}
}

// Last is the last revision the watcher received.
func (w *watcher) Last() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Sessions returns the streams so far.
func (w *watcher) Sessions() []WatchSession {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]WatchSession, len(w.sessions))
	for i, s := range w.sessions {
		s.Events = append([]Event(nil), s.Events...)
		out[i] = s
	}
	return out
}

func (w *watcher) run(ctx context.Context) {
	defer w.close()
	node, compacted, reset := w.home, 0, false
	for ctx.Err() == nil {
		err := w.session(ctx, node, reset)
		reset = false
		if ctx.Err() != nil {
			return
		}
		var ce *rookeryv1.WatchCompacted
		if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
			for _, d := range st.Details() {
				if c, ok := d.(*rookeryv1.WatchCompacted); ok {
					ce = c
				}
			}
		}
		if ce != nil {
			compacted++
			if compacted >= len(w.conns) {
				// No node keeps the history from our revision: restart
				// from the oldest one they can serve, with an explicit
				// gap the checker does not count as a stream fault.
				w.mu.Lock()
				w.last = ce.GetCompactRevision()
				w.mu.Unlock()
				reset, compacted = true, 0
			}
		} else {
			compacted = 0
		}
		node = (node + 1) % len(w.conns)
		sleepCtx(ctx, 50*time.Millisecond)
	}
}

// session runs one Watch stream on node i until it breaks, falls silent
// for w.stall, or ctx ends.
func (w *watcher) session(ctx context.Context, i int, reset bool) error {
	w.mu.Lock()
	from := w.last
	w.sessions = append(w.sessions, WatchSession{Watcher: w.name, Node: w.c.Nodes[i].ID, From: from, Reset: reset})
	idx := len(w.sessions) - 1
	w.mu.Unlock()
	end := func(err error) error {
		w.mu.Lock()
		w.sessions[idx].End = fmt.Sprint(err)
		w.mu.Unlock()
		return err
	}

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(w.stall, func() { cancel(errors.New("stream silent")) })
	defer watchdog.Stop()
	dir := rookeryv1.NewDirectoryClient(w.conns[i])
	stream, err := dir.Watch(sctx, &rookeryv1.WatchRequest{FromRevision: from, ProgressIntervalMs: 200})
	if err != nil {
		return end(err)
	}
	first := true
	for {
		resp, err := stream.Recv()
		if err != nil {
			if c := context.Cause(sctx); c != nil && ctx.Err() == nil {
				err = fmt.Errorf("%w (%w)", c, err)
			}
			return end(err)
		}
		watchdog.Reset(w.stall)
		w.mu.Lock()
		s := &w.sessions[idx]
		if first {
			s.Start = resp.GetRevision()
			first = false
			w.estOnce.Do(func() { close(w.established) })
		}
		for _, pe := range resp.GetEvents() {
			e := eventFromProto(pe)
			s.Events = append(s.Events, e)
			if e.Revision > w.last {
				w.last = e.Revision
			}
		}
		w.mu.Unlock()
	}
}

// waitFor waits until the watcher has received revision rev.
func (w *watcher) waitFor(ctx context.Context, rev uint64) error {
	for w.Last() < rev {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s stopped at revision %d, want %d: %w", w.name, w.Last(), rev, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
