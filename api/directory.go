package api

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/fsm"
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
	switch c {
	case rookeryv1.Consistency_CONSISTENCY_UNSPECIFIED, rookeryv1.Consistency_CONSISTENCY_LINEARIZABLE:
		if err := d.s.node.LinearizableRead(ctx); err != nil {
			return nil, nodeStatus("linearizable read", err)
		}
	case rookeryv1.Consistency_CONSISTENCY_STALE:
		if err := d.s.node.CheckReads(); err != nil {
			return nil, nodeStatus("stale read", err)
		}
	default:
		return nil, invalid("consistency", "unknown value %d", int32(c))
	}
	return d.s.node.Store().View(), nil
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
		return nil, status.Errorf(codes.NotFound, "%s: mailbox doesn't exist (at revision %d)", req.GetName(), v.Revision())
	}
	return &rookeryv1.GetResponse{Mailbox: MailboxToProto(e), Revision: v.Revision()}, nil
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

// write validates, stamps and proposes one command. The identity comes
// from the auth interceptor, never from the request, so reserved_by cannot
// be forged by a client.
func (d *directoryServer) write(ctx context.Context, cmd fsm.Command) (*rookeryv1.WriteResponse, error) {
	if err := validateCommand(cmd); err != nil {
		return nil, err
	}
	stampIdentity(ctx, &cmd)
	cmd.Time = time.Now().UnixNano()
	res, err := d.s.node.Apply(ctx, []fsm.Command{cmd})
	if err != nil {
		return nil, nodeStatus(cmd.Op.String()+" "+cmd.Name, err)
	}
	if len(res) != 1 {
		return nil, status.Errorf(codes.Internal, "%s %s: %d results for one command", cmd.Op, cmd.Name, len(res))
	}
	if err := codeStatus(res[0].Code, cmd.Name); err != nil {
		return nil, err
	}
	return &rookeryv1.WriteResponse{Revision: res[0].Revision}, nil
}

// stampIdentity records who issues cmd. The role was checked by the
// interceptor; the server binding is decided by the state machine on the
// committed entry (fsm authorize), so every write path (single RPCs and
// Batch) only stamps.
func stampIdentity(ctx context.Context, cmd *fsm.Command) {
	if id, ok := IdentityFromContext(ctx); ok {
		cmd.Identity, cmd.Bound = id.Name, id.Server
	}
}

// validateCommand names the offending field; fsm.Validate has the final
// word on the limits shared with the MUPDATE path.
func validateCommand(cmd fsm.Command) error {
	if cmd.Name == "" {
		return invalid("name", "must not be empty")
	}
	if cmd.Op != fsm.OpDelete && cmd.Location == "" {
		return invalid("location", "must not be empty (server!partition)")
	}
	if err := fsm.Validate(cmd); err != nil {
		return status.Errorf(codes.InvalidArgument, "invalid %s request: %v", cmd.Op, err)
	}
	return nil
}

// WaitRevision returns once this node has applied the revision.
func (d *directoryServer) WaitRevision(ctx context.Context, req *rookeryv1.WaitRevisionRequest) (*rookeryv1.WaitRevisionResponse, error) {
	if err := d.s.node.WaitRevision(ctx, req.GetRevision()); err != nil {
		return nil, nodeStatus("wait for revision", err)
	}
	return &rookeryv1.WaitRevisionResponse{Revision: d.s.node.Store().Revision()}, nil
}
