package client

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/api"
	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Get returns one entry and the revision it was read at. stale serves it
// from the answering node's local state without a round trip to the leader.
func (c *Client) Get(ctx context.Context, name string, stale bool) (fsm.Entry, uint64, error) {
	req := &rookeryv1.GetRequest{Name: name, Consistency: consistency(stale)}
	var resp *rookeryv1.GetResponse
	err := c.do(ctx, read, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.dir.Get(ctx, req)
		return err
	})
	if err != nil {
		return fsm.Entry{}, 0, err
	}
	return api.MailboxFromProto(resp.GetMailbox()), resp.GetRevision(), nil
}

func consistency(stale bool) rookeryv1.Consistency {
	if stale {
		return rookeryv1.Consistency_CONSISTENCY_STALE
	}
	return rookeryv1.Consistency_CONSISTENCY_LINEARIZABLE
}

// ListOptions selects entries for List and ListAll.
type ListOptions struct {
	NamePrefix     string
	LocationPrefix string // byte prefix of "server!partition"
	Stale          bool
	// Limit stops ListAll after this many entries (0: all).
	Limit int
	// StartAfter starts the listing after this name (Cyrus order).
	StartAfter string

	pageSize uint32 // overrides Config.ListPageSize
}

// ListAll returns every matching entry in dbname order, all read at one
// revision, which it returns too. Pages come from one node (the view
// behind a page token lives there); if that node fails mid-listing the
// listing restarts on the next node.
func (c *Client) ListAll(ctx context.Context, opts ListOptions) ([]fsm.Entry, uint64, error) {
	var out []fsm.Entry
	rev, err := c.listEach(ctx, opts, func() { out = out[:0] }, func(e fsm.Entry) error {
		out = append(out, e)
		return nil
	})
	return out, rev, err
}

// ErrListingRestarted is returned by List when the node serving a listing
// failed after entries were delivered: the listing cannot continue at the
// same revision elsewhere. Start again (StartAfter the last name seen
// continues at a newer revision).
var ErrListingRestarted = errors.New("client: listing interrupted by a node failure after entries were delivered")

// List calls fn for every matching entry, in dbname order, as pages
// arrive: memory stays bounded by one page whatever the directory's size.
// All entries are read at the returned revision. fn's error stops it.
func (c *Client) List(ctx context.Context, opts ListOptions, fn func(fsm.Entry) error) (uint64, error) {
	delivered := false
	var restarted bool
	rev, err := c.listEach(ctx, opts, func() { restarted = delivered }, func(e fsm.Entry) error {
		if restarted {
			return ErrListingRestarted
		}
		delivered = true
		return fn(e)
	})
	return rev, err
}

// errLimit stops a listing at ListOptions.Limit.
var errLimit = errors.New("limit reached")

// listEach calls fn for every matching entry. When a listing has to start
// over on another node, restart is called first, so that the caller drops
// what it collected.
func (c *Client) listEach(ctx context.Context, opts ListOptions, restart func(), fn func(fsm.Entry) error) (uint64, error) {
	var rev uint64
	started := false
	err := c.do(ctx, readLong, func(ctx context.Context, ep *endpoint) error {
		if started {
			restart()
		}
		started = true
		count := 0
		var err error
		rev, err = c.listOn(ctx, ep, opts, func(e fsm.Entry) error {
			count++
			if err := fn(e); err != nil {
				return err
			}
			if opts.Limit > 0 && count >= opts.Limit {
				return errLimit
			}
			return nil
		})
		if errors.Is(err, errLimit) {
			return nil
		}
		return err
	})
	return rev, err
}

// listOn pages through one listing on one endpoint. A page token that the
// node no longer honours (FAILED_PRECONDITION) restarts the listing once on
// the same node; the caller's fn must then tolerate seeing entries again,
// which listEach handles by resetting.
func (c *Client) listOn(ctx context.Context, ep *endpoint, opts ListOptions, fn func(fsm.Entry) error) (uint64, error) {
	req := &rookeryv1.ListRequest{
		NamePrefix:     opts.NamePrefix,
		LocationPrefix: opts.LocationPrefix,
		PageSize:       c.cfg.ListPageSize,
		Consistency:    consistency(opts.Stale),
		StartAfter:     opts.StartAfter,
	}
	if opts.pageSize > 0 {
		req.PageSize = opts.pageSize
	}
	if opts.Limit > 0 && opts.Limit < int(req.PageSize) {
		req.PageSize = uint32(opts.Limit)
	}
	var rev uint64
	for {
		pctx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
		resp, err := ep.dir.List(pctx, req)
		cancel()
		if err != nil {
			if status.Code(err) == codes.FailedPrecondition && req.PageToken != "" {
				// The pinned view expired: report it as retryable so
				// the whole listing restarts (on the next node).
				return 0, status.Errorf(codes.Unavailable, "listing view expired: %v", err)
			}
			return 0, err
		}
		rev = resp.GetRevision()
		for _, m := range resp.GetMailboxes() {
			if err := fn(api.MailboxFromProto(m)); err != nil {
				return rev, err
			}
		}
		if resp.GetNextPageToken() == "" {
			return rev, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// Reserve takes name at location for a mailbox being created or moved.
func (c *Client) Reserve(ctx context.Context, name, location string) (uint64, error) {
	return c.write(ctx, func(ctx context.Context, ep *endpoint) (*rookeryv1.WriteResponse, error) {
		return ep.dir.Reserve(ctx, &rookeryv1.ReserveRequest{Name: name, Location: location})
	})
}

// Activate creates or replaces the ACTIVE entry name.
func (c *Client) Activate(ctx context.Context, name, location, acl string) (uint64, error) {
	return c.write(ctx, func(ctx context.Context, ep *endpoint) (*rookeryv1.WriteResponse, error) {
		return ep.dir.Activate(ctx, &rookeryv1.ActivateRequest{Name: name, Location: location, Acl: acl})
	})
}

// Deactivate returns the ACTIVE entry name to RESERVED at location.
func (c *Client) Deactivate(ctx context.Context, name, location string) (uint64, error) {
	return c.write(ctx, func(ctx context.Context, ep *endpoint) (*rookeryv1.WriteResponse, error) {
		return ep.dir.Deactivate(ctx, &rookeryv1.DeactivateRequest{Name: name, Location: location})
	})
}

// Delete removes the entry name.
func (c *Client) Delete(ctx context.Context, name string) (uint64, error) {
	return c.write(ctx, func(ctx context.Context, ep *endpoint) (*rookeryv1.WriteResponse, error) {
		return ep.dir.Delete(ctx, &rookeryv1.DeleteRequest{Name: name})
	})
}

func (c *Client) write(ctx context.Context, fn func(context.Context, *endpoint) (*rookeryv1.WriteResponse, error)) (uint64, error) {
	var rev uint64
	err := c.do(ctx, write, func(ctx context.Context, ep *endpoint) error {
		resp, err := fn(ctx, ep)
		if err != nil {
			return err
		}
		rev = resp.GetRevision()
		return nil
	})
	return rev, err
}

// WaitRevision returns once the answering node has applied rev, and that
// node's revision.
func (c *Client) WaitRevision(ctx context.Context, rev uint64) (uint64, error) {
	var got uint64
	err := c.do(ctx, write, func(ctx context.Context, ep *endpoint) error {
		resp, err := ep.dir.WaitRevision(ctx, &rookeryv1.WaitRevisionRequest{Revision: rev})
		got = resp.GetRevision()
		return err
	})
	return got, err
}
