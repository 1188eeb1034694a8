package api

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// codeStatus maps an fsm outcome to the gRPC status a client acts on. The
// message keeps the text real Cyrus sends, so MUPDATE and gRPC users read the
// same words.
func codeStatus(c fsm.Code, name string) error {
	switch c {
	case fsm.CodeOK:
		return nil
	case fsm.CodeExists:
		return status.Errorf(codes.AlreadyExists, "%s: %s at another location", name, c.Text())
	case fsm.CodeNotFound:
		return status.Errorf(codes.NotFound, "%s: %s", name, c.Text())
	case fsm.CodeNotActive:
		return status.Errorf(codes.FailedPrecondition, "%s: %s", name, c.Text())
	case fsm.CodeInvalid:
		return status.Errorf(codes.InvalidArgument, "%s: %s", name, c.Text())
	case fsm.CodePermissionDenied:
		return status.Errorf(codes.PermissionDenied, "%s: %s: the entry is, or would be, on a server this identity is not bound to", name, c.Text())
	case fsm.CodeConflict:
		// ABORTED: a compare-and-set lost; re-read and decide again.
		return status.Errorf(codes.Aborted, "%s: %s", name, c.Text())
	}
	return status.Errorf(codes.Internal, "%s: unexpected result %s", name, c.Text())
}

// nodeStatus maps an error from the cluster layer to a gRPC status. Loss of
// leader or quorum is UNAVAILABLE, which clients treat as "try again or try
// another node"; anything unrecognised is INTERNAL so that bugs are not
// disguised as transient faults.
func nodeStatus(what string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unknown {
		return err
	}
	// ErrUnavailable first: the cluster wraps its own write timeout in it
	// together with context.DeadlineExceeded.
	switch {
	case errors.Is(err, cluster.ErrUnavailable), errors.Is(err, cluster.ErrShutdown):
		return status.Errorf(codes.Unavailable, "%s: %v", what, err)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "%s: %v", what, err)
	case errors.Is(err, context.Canceled):
		return status.Errorf(codes.Canceled, "%s: %v", what, err)
	}
	var nl *cluster.NotLeaderError
	if errors.As(err, &nl) {
		// Membership and leadership changes run on the leader only; the
		// message names it so that a client can go there.
		if nl.Leader.ID == "" {
			return status.Errorf(codes.Unavailable, "%s: this node is not the leader and knows no leader", what)
		}
		return status.Errorf(codes.FailedPrecondition, "%s: not the leader; the leader is %s at %s", what, nl.Leader.ID, nl.Leader.APIAddr)
	}
	return status.Errorf(codes.Internal, "%s: %v", what, err)
}

// invalid builds the INVALID_ARGUMENT status for a request field, naming
// the field so that the caller knows what to fix.
func invalid(field, format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, fmt.Sprintf(format, args...))
}

// compactedStatus ends a Watch whose start is older than the kept history.
// The WatchCompacted detail tells the client where it can resume after
// re-reading a consistent listing.
func compactedStatus(ce *fsm.CompactedError) error {
	st := status.New(codes.FailedPrecondition, fmt.Sprintf(
		"from_revision %d is compacted: history on this node starts after revision %d (current %d); list at a revision and watch from there",
		ce.Requested, ce.Compact, ce.Current))
	withDetail, err := st.WithDetails(&rookeryv1.WatchCompacted{
		CompactRevision: ce.Compact,
		CurrentRevision: ce.Current,
	})
	if err != nil {
		return st.Err()
	}
	return withDetail.Err()
}
