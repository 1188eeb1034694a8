package client

import (
	"context"
	"time"

	"github.com/rookery/rookery/api"
	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// ListReservations calls fn for every RESERVED entry (all read at one
// revision, which it returns), or only those reserved before `before` when
// it is not zero.
func (c *Client) ListReservations(ctx context.Context, before time.Time, stale bool, fn func(fsm.Entry) error) (uint64, error) {
	req := &rookeryv1.ListReservationsRequest{PageSize: c.cfg.ListPageSize, Consistency: consistency(stale)}
	if !before.IsZero() {
		req.ReservedBeforeUnixNano = before.UnixNano()
	}
	var rev uint64
	err := c.do(ctx, readLong, func(ctx context.Context, ep *endpoint) error {
		r := freshReservationsRequest(req)
		for {
			pctx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
			resp, err := ep.dir.ListReservations(pctx, r)
			cancel()
			if err != nil {
				return err
			}
			rev = resp.GetRevision()
			for _, m := range resp.GetMailboxes() {
				if err := fn(api.MailboxFromProto(m)); err != nil {
					return err
				}
			}
			if resp.GetNextPageToken() == "" {
				return nil
			}
			r.PageToken = resp.GetNextPageToken()
		}
	})
	return rev, err
}

// freshReservationsRequest is req without a page token, for a listing that
// starts (again) on an endpoint.
func freshReservationsRequest(r *rookeryv1.ListReservationsRequest) *rookeryv1.ListReservationsRequest {
	return &rookeryv1.ListReservationsRequest{
		ReservedBeforeUnixNano: r.GetReservedBeforeUnixNano(),
		PageSize:               r.GetPageSize(),
		Consistency:            r.GetConsistency(),
	}
}

// Release removes the reservation of name if it is still the one at
// revision (0: the current one), and returns the revision of the removal.
// It fails with ABORTED when the entry changed since, FAILED_PRECONDITION
// when it is not RESERVED.
func (c *Client) Release(ctx context.Context, name string, revision uint64) (uint64, error) {
	return c.write(ctx, func(ctx context.Context, ep *endpoint) (*rookeryv1.WriteResponse, error) {
		return ep.dir.Release(ctx, &rookeryv1.ReleaseRequest{Name: name, Revision: revision})
	})
}

// MaxBatch is the most commands one Batch call may carry.
const MaxBatch = api.MaxBatchCommands

// Batch applies up to MaxBatch directory commands (Op, Name, Location,
// ACL, IfRevision are used; the server stamps identity and time) and
// returns one result per command. An error means none was committed, or,
// when it is UNAVAILABLE, that the outcome is unknown.
func (c *Client) Batch(ctx context.Context, cmds []fsm.Command) (*rookeryv1.BatchResponse, error) {
	req := &rookeryv1.BatchRequest{Commands: make([]*rookeryv1.BatchCommand, len(cmds))}
	for i, cmd := range cmds {
		req.Commands[i] = &rookeryv1.BatchCommand{
			Op: api.OpToProto(cmd.Op), Name: cmd.Name, Location: cmd.Location, Acl: cmd.ACL, IfRevision: cmd.IfRevision,
		}
	}
	var resp *rookeryv1.BatchResponse
	err := c.do(ctx, write, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.dir.Batch(ctx, req)
		return err
	})
	return resp, err
}
