package api

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/pbconv"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// directoryServer implements rookery.v1.Directory.
type directoryServer struct {
	rookeryv1.UnimplementedDirectoryServer
	s *Server
}

// readView returns the view a read is served from: after a linearizable
// read barrier unless the caller asked for a stale read.
func (d *directoryServer) readView(ctx context.Context, c rookeryv1.Consistency) (*fsm.View, error) {
	mode, what := directory.Linearizable, "linearizable read"
	switch c {
	case rookeryv1.Consistency_CONSISTENCY_UNSPECIFIED, rookeryv1.Consistency_CONSISTENCY_LINEARIZABLE:
	case rookeryv1.Consistency_CONSISTENCY_STALE:
		mode, what = directory.Stale, "stale read"
	default:
		return nil, invalid("consistency", "unknown value %d", int32(c))
	}
	v, err := d.s.dir.View(ctx, mode)
	return v, dirStatus(what, err)
}

// Get returns one entry.
func (d *directoryServer) Get(ctx context.Context, req *rookeryv1.GetRequest) (*rookeryv1.GetResponse, error) {
	if req.GetName() == "" {
		return nil, invalid("name", "must not be empty")
	}
	v, err := d.readView(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	e, ok := v.Get(req.GetName())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%v (at revision %d)", &directory.Error{Kind: directory.KindNotFound, Name: req.GetName()}, v.Revision())
	}
	return &rookeryv1.GetResponse{Mailbox: pbconv.MailboxToProto(e), Revision: v.Revision()}, nil
}

// Reserve takes a name for a mailbox being created or moved.
func (d *directoryServer) Reserve(ctx context.Context, req *rookeryv1.ReserveRequest) (*rookeryv1.WriteResponse, error) {
	return d.write(ctx, fsm.Command{Op: fsm.OpReserve, Name: req.GetName(), Location: req.GetLocation()})
}

// Activate creates or replaces an ACTIVE entry.
func (d *directoryServer) Activate(ctx context.Context, req *rookeryv1.ActivateRequest) (*rookeryv1.WriteResponse, error) {
	return d.write(ctx, fsm.Command{Op: fsm.OpActivate, Name: req.GetName(), Location: req.GetLocation(), ACL: req.GetAcl()})
}

// Deactivate returns an ACTIVE entry to RESERVED at a location.
func (d *directoryServer) Deactivate(ctx context.Context, req *rookeryv1.DeactivateRequest) (*rookeryv1.WriteResponse, error) {
	return d.write(ctx, fsm.Command{Op: fsm.OpDeactivate, Name: req.GetName(), Location: req.GetLocation()})
}

// Delete removes an entry.
func (d *directoryServer) Delete(ctx context.Context, req *rookeryv1.DeleteRequest) (*rookeryv1.WriteResponse, error) {
	return d.write(ctx, fsm.Command{Op: fsm.OpDelete, Name: req.GetName()})
}

// write hands one command to the directory service as the caller.
func (d *directoryServer) write(ctx context.Context, cmd fsm.Command) (*rookeryv1.WriteResponse, error) {
	if err := requireFields(cmd); err != nil {
		return nil, err
	}
	res, err := d.s.dir.Write(ctx, caller(ctx), cmd)
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		return nil, dirStatus(cmd.Op.String()+" "+cmd.Name, err)
	}
	return &rookeryv1.WriteResponse{Revision: res[0].Revision}, nil
}

// caller is the identity the auth interceptor attached, never one taken
// from the request, so reserved_by cannot be forged by a client. The
// interceptor already refused writes by readers; without authentication
// every caller may write.
func caller(ctx context.Context) directory.Caller {
	id, ok := IdentityFromContext(ctx)
	return directory.Caller{Name: id.Name, Server: id.Server, Writer: !ok || id.Writer}
}

// requireFields names a missing field of a write request; the directory
// service checks everything else.
func requireFields(cmd fsm.Command) error {
	if cmd.Name == "" {
		return invalid("name", "must not be empty")
	}
	if cmd.Op != fsm.OpDelete && cmd.Location == "" {
		return invalid("location", "must not be empty (server!partition)")
	}
	return nil
}

// WaitRevision returns once this node has applied the revision.
func (d *directoryServer) WaitRevision(ctx context.Context, req *rookeryv1.WaitRevisionRequest) (*rookeryv1.WaitRevisionResponse, error) {
	rev, err := d.s.dir.WaitRevision(ctx, req.GetRevision())
	if err != nil {
		return nil, dirStatus("wait for revision", err)
	}
	return &rookeryv1.WaitRevisionResponse{Revision: rev}, nil
}
