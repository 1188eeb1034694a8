package api

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/pbconv"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Watch streams every change after from_revision from the directory
// service's follower on this node, so followers serve watchers as well as
// the leader does and every node sends the same events in the same order
// (revisions are dense and assigned by the log). The first message is sent
// at once and carries the start revision, so a client knows the stream is
// established.
//
// Progress messages carry the revision up to which every matching change
// has been sent. They are sent only while the node knows a leader: a node
// cut off from the cluster falls silent, and a client that stops hearing
// progress moves to another node instead of trusting a frozen view.
func (d *directoryServer) Watch(req *rookeryv1.WatchRequest, stream grpc.ServerStreamingServer[rookeryv1.WatchResponse]) error {
	if _, err := listFilterOf(req.GetNamePrefix(), req.GetLocationPrefix()); err != nil {
		return err
	}
	interval := d.s.cfg.WatchProgressInterval
	if ms := req.GetProgressIntervalMs(); ms > 0 {
		interval = max(time.Duration(ms)*time.Millisecond, d.s.cfg.MinWatchProgressInterval)
	}
	ctx := stream.Context()
	if _, err := d.s.dir.View(ctx, directory.Stale); err != nil {
		return dirStatus("watch", err)
	}
	pos := req.GetFromRevision()
	switch {
	case pos == 0 && req.GetFromOldest():
		pos = d.s.dir.CompactRevision()
	case pos == 0:
		pos = d.s.dir.Revision()
	}
	if err := stream.Send(&rookeryv1.WatchResponse{Revision: pos}); err != nil {
		return err
	}
	f := d.s.dir.Follow(pos, directory.Filter{NamePrefix: req.GetNamePrefix(), LocationPrefix: req.GetLocationPrefix()}, d.s.cfg.WatchBatch)
	err := f.Run(ctx, directory.Sink{
		Events: func(evs []fsm.Event) error {
			out := make([]*rookeryv1.Event, len(evs))
			for i, ev := range evs {
				out[i] = pbconv.EventToProto(ev)
			}
			return stream.Send(&rookeryv1.WatchResponse{Events: out, Revision: f.Revision()})
		},
		Progress: func() error {
			if d.s.node.Leader().ID == "" {
				return nil
			}
			return stream.Send(&rookeryv1.WatchResponse{Revision: f.Revision()})
		},
		Interval: interval,
	})
	switch {
	case err == nil:
		return status.FromContextError(ctx.Err()).Err()
	case directory.KindOf(err) == directory.KindCompacted:
		return dirStatus("watch", err)
	}
	return err
}
