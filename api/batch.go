package api

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Limits of one Batch call and of each raft entry it proposes.
const (
	// MaxBatchCommands is the most commands one Batch call may carry.
	MaxBatchCommands = 10_000
	// batchEntryCommands and batchEntryBytes bound one proposal: large
	// enough that per-entry costs (encoding, fsync, replication framing)
	// vanish, small enough that an entry stays well under the gRPC message
	// limit when a follower forwards it (Peer.Apply) and that one apply
	// holds the store lock for a few milliseconds at most.
	batchEntryCommands = 4096
	batchEntryBytes    = 1 << 20
)

// Batch applies many directory writes through as few raft entries as fit.
// Each command is checked and authorized exactly like its single RPC, and
// answered with the code that RPC would return.
func (d *directoryServer) Batch(ctx context.Context, req *rookeryv1.BatchRequest) (*rookeryv1.BatchResponse, error) {
	in := req.GetCommands()
	if len(in) > MaxBatchCommands {
		return nil, invalid("commands", "%d commands; at most %d per call", len(in), MaxBatchCommands)
	}
	resp := &rookeryv1.BatchResponse{Results: make([]*rookeryv1.BatchResult, len(in))}
	now := time.Now().UnixNano()
	cmds := make([]fsm.Command, 0, len(in))
	slot := make([]int, 0, len(in)) // cmds[j] answers resp.Results[slot[j]]
	for i, bc := range in {
		cmd := fsm.Command{
			Op: opFromProto(bc.GetOp()), Name: bc.GetName(), Location: bc.GetLocation(),
			ACL: bc.GetAcl(), IfRevision: bc.GetIfRevision(), Time: now,
		}
		stampIdentity(ctx, &cmd)
		if err := checkBatchOp(bc.GetOp(), cmd); err != nil {
			resp.Results[i] = batchError(err)
			continue
		}
		cmds = append(cmds, cmd)
		slot = append(slot, i)
	}
	for start := 0; start < len(cmds); {
		end := entryEnd(cmds, start)
		res, err := d.s.node.Apply(ctx, cmds[start:end])
		if err == nil && len(res) != end-start {
			err = status.Errorf(codes.Internal, "%d results for %d commands", len(res), end-start)
		}
		if err != nil {
			st := nodeStatus("batch", err)
			if start == 0 {
				return nil, st // nothing committed: the client may retry the call
			}
			for j := start; j < len(cmds); j++ {
				resp.Results[slot[j]] = batchError(st)
			}
			return resp, nil
		}
		for k, r := range res {
			j := start + k
			if err := codeStatus(r.Code, cmds[j].Name); err != nil {
				resp.Results[slot[j]] = batchError(err)
				continue
			}
			resp.Results[slot[j]] = &rookeryv1.BatchResult{Revision: r.Revision}
			resp.Revision = max(resp.Revision, r.Revision)
		}
		start = end
	}
	return resp, nil
}

// checkBatchOp rejects operations a Batch may not carry before the common
// field checks.
func checkBatchOp(op rookeryv1.Operation, cmd fsm.Command) error {
	switch op {
	case rookeryv1.Operation_OPERATION_RESERVE, rookeryv1.Operation_OPERATION_ACTIVATE,
		rookeryv1.Operation_OPERATION_DEACTIVATE, rookeryv1.Operation_OPERATION_DELETE:
		return validateCommand(cmd)
	}
	return invalid("op", "must be RESERVE, ACTIVATE, DEACTIVATE or DELETE, not %s", op)
}

// entryEnd returns the end of the raft entry starting at cmds[start].
func entryEnd(cmds []fsm.Command, start int) int {
	size := 0
	for i := start; i < len(cmds); i++ {
		c := &cmds[i]
		size += 32 + len(c.Name) + len(c.Location) + len(c.ACL) + len(c.Identity) + len(c.Bound)
		if i > start && (i-start >= batchEntryCommands || size > batchEntryBytes) {
			return i
		}
	}
	return len(cmds)
}

func batchError(err error) *rookeryv1.BatchResult {
	st := status.Convert(err)
	return &rookeryv1.BatchResult{Code: int32(st.Code()), Message: st.Message()}
}
