package api

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// kindCode is the gRPC code a client acts on for each directory refusal.
var kindCode = map[directory.Kind]codes.Code{
	directory.KindPermissionDenied: codes.PermissionDenied,
	directory.KindInvalid:          codes.InvalidArgument,
	directory.KindNotFound:         codes.NotFound,
	directory.KindExists:           codes.AlreadyExists,
	directory.KindNotActive:        codes.FailedPrecondition,
	// ABORTED: a compare-and-set lost; re-read and decide again.
	directory.KindConflict: codes.Aborted,
}

// dirStatus maps an error of the directory service to a gRPC status. The
// service's message is kept, so MUPDATE and gRPC users read the same
// words; failures of the cluster underneath are mapped by nodeStatus.
func dirStatus(what string, err error) error {
	var de *directory.Error
	var ce *fsm.CompactedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return compactedStatus(ce)
	case !errors.As(err, &de):
		return nodeStatus(what, err)
	}
	if c, ok := kindCode[de.Kind]; ok {
		return status.Error(c, de.Error())
	}
	if de.Err != nil {
		err = de.Err
	}
	return nodeStatus(what, err)
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
