package api

import (
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Watch streams every change after from_revision from this node's own
// applied state, so followers serve watchers as well as the leader does and
// every node sends the same events in the same order (revisions are dense
// and assigned by the log). The first message is sent at once and carries
// the start revision, so a client knows the stream is established.
//
// Progress messages carry the revision up to which every matching change
// has been sent. They are sent only while the node knows a leader: a node
// cut off from the cluster falls silent, and a client that stops hearing
// progress moves to another node instead of trusting a frozen view.
func (d *directoryServer) Watch(req *rookeryv1.WatchRequest, stream grpc.ServerStreamingServer[rookeryv1.WatchResponse]) error {
	f, err := listFilterOf(req.GetNamePrefix(), req.GetLocationPrefix())
	if err != nil {
		return err
	}
	interval := d.s.cfg.WatchProgressInterval
	if ms := req.GetProgressIntervalMs(); ms > 0 {
		interval = max(time.Duration(ms)*time.Millisecond, d.s.cfg.MinWatchProgressInterval)
	}
	if err := d.s.node.CheckReads(); err != nil {
		return nodeStatus("watch", err)
	}
	store := d.s.node.Store()
	pos := req.GetFromRevision()
	switch {
	case pos == 0 && req.GetFromOldest():
		pos = compactRevision(store)
	case pos == 0:
		pos = store.Revision()
	}
	if err := stream.Send(&rookeryv1.WatchResponse{Revision: pos}); err != nil {
		return err
	}
	ctx := stream.Context()
	timer := time.NewTimer(interval)
	defer timer.Stop()
	batch := d.s.cfg.WatchBatch
	for {
		changed := store.Changed()
		evs, err := store.EventsSince(pos, batch)
		if err != nil {
			var ce *fsm.CompactedError
			if errors.As(err, &ce) {
				return compactedStatus(ce)
			}
			return nodeStatus("watch", err)
		}
		if len(evs) > 0 {
			out := make([]*rookeryv1.Event, 0, len(evs))
			for _, ev := range evs {
				if f.matchEvent(ev) {
					out = append(out, EventToProto(ev))
				}
			}
			pos = evs[len(evs)-1].Revision
			if len(out) > 0 {
				if err := stream.Send(&rookeryv1.WatchResponse{Events: out, Revision: pos}); err != nil {
					return err
				}
				resetTimer(timer, interval)
			}
			if len(evs) == batch {
				continue // more history to drain before waiting
			}
		}
		select {
		case <-changed:
		case <-timer.C:
			if d.s.node.Leader().ID != "" {
				if err := stream.Send(&rookeryv1.WatchResponse{Revision: pos}); err != nil {
					return err
				}
			}
			timer.Reset(interval)
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	t.Reset(d)
}
