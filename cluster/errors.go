package cluster

import (
	"errors"
	"fmt"
)

// ErrUnavailable is wrapped by every error caused by the cluster being
// unable to serve right now: no leader, no quorum, a leader that died or
// lost leadership mid-request, or WriteTimeout expiring. The condition is
// temporary; protocol layers map it to MUPDATE "NO" and gRPC UNAVAILABLE.
// A write that failed with it may or may not have been applied.
var ErrUnavailable error = temporaryError("cluster: unavailable")

// ErrShutdown is returned once the node has been closed.
var ErrShutdown error = temporaryError("cluster: node is shut down")

// ErrNotLeader is wrapped by NotLeaderError: the operation must run on the
// leader and this node cannot forward it.
var ErrNotLeader = errors.New("cluster: not the leader")

// NotLeaderError says which node leads, so a caller can redirect there.
type NotLeaderError struct {
	Leader Peer // zero when unknown
}

func (e *NotLeaderError) Error() string {
	if e.Leader.ID == "" {
		return "cluster: not the leader (leader unknown)"
	}
	return fmt.Sprintf("cluster: not the leader (leader is %s at %s)", e.Leader.ID, e.Leader.APIAddr)
}

func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// errNotApplied marks an attempt that certainly did not reach the log (this
// node is not the leader, or the leader could not be reached), so it is safe
// to retry elsewhere. It is a kind of ErrUnavailable: when retries run out,
// the caller sees a temporary failure.
var errNotApplied = fmt.Errorf("%w: not proposed", ErrUnavailable)

// temporaryError is a condition that passes: it reports Temporary() true,
// which is how the directory service (and anything else above the
// replica) recognises "not now" without importing this package.
type temporaryError string

func (e temporaryError) Error() string   { return string(e) }
func (e temporaryError) Temporary() bool { return true }
