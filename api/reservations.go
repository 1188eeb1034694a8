package api

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// ListReservations pages through RESERVED entries (the reservation index:
// O(reservations)), optionally only those reserved before a time.
func (d *directoryServer) ListReservations(ctx context.Context, req *rookeryv1.ListReservationsRequest) (*rookeryv1.ListResponse, error) {
	if req.GetReservedBeforeUnixNano() < 0 {
		return nil, invalid("reserved_before_unix_nano", "must not be negative")
	}
	f := listFilter{kind: 3, before: req.GetReservedBeforeUnixNano()}
	return d.listPage(ctx, f, req.GetPageSize(), req.GetPageToken(), "", req.GetConsistency())
}

// Release removes a stuck reservation, and only that reservation: the
// DELETE carries the reservation's revision (fsm.Command.IfRevision), so a
// backend that ACTIVATEs or re-RESERVEs the name first wins and the release
// is refused with ABORTED.
//
// Only the entry as it was at the revision is checked for RESERVED, here
// before proposing: a revision names one change, so an entry still at that
// revision at apply time is still that reservation.
func (d *directoryServer) Release(ctx context.Context, req *rookeryv1.ReleaseRequest) (*rookeryv1.WriteResponse, error) {
	name := req.GetName()
	if name == "" {
		return nil, invalid("name", "must not be empty")
	}
	v, err := d.readView(ctx, rookeryv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		return nil, err
	}
	e, ok := v.Get(name)
	switch {
	case !ok:
		return nil, status.Errorf(codes.NotFound, "%v (at revision %d)", &directory.Error{Kind: directory.KindNotFound, Name: name}, v.Revision())
	case req.GetRevision() != 0 && e.ModRevision != req.GetRevision():
		return nil, status.Errorf(codes.Aborted, "%v %d (now %s at revision %d)", &directory.Error{Kind: directory.KindConflict, Name: name}, req.GetRevision(), e.State, e.ModRevision)
	case e.State != fsm.StateReserved:
		return nil, status.Errorf(codes.FailedPrecondition, "%s: not reserved (%s at %s, revision %d)", name, e.State, e.Location, e.ModRevision)
	}
	return d.write(ctx, fsm.Command{Op: fsm.OpDelete, Name: name, IfRevision: e.ModRevision})
}
