package api

import (
	"context"

	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/pbconv"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// MaxBatchCommands is the most commands one Batch call may carry.
const MaxBatchCommands = pbconv.MaxBatchCommands

// Batch applies many directory writes through as few raft entries as fit.
// Each command is checked and authorized exactly like its single RPC, and
// answered with the code that RPC would return.
func (d *directoryServer) Batch(ctx context.Context, req *rookeryv1.BatchRequest) (*rookeryv1.BatchResponse, error) {
	in := req.GetCommands()
	if len(in) > MaxBatchCommands {
		return nil, invalid("commands", "%d commands; at most %d per call", len(in), MaxBatchCommands)
	}
	resp := &rookeryv1.BatchResponse{Results: make([]*rookeryv1.BatchResult, len(in))}
	cmds := make([]fsm.Command, 0, len(in))
	slot := make([]int, 0, len(in)) // cmds[j] answers resp.Results[slot[j]]
	for i, bc := range in {
		cmd := fsm.Command{
			Op: pbconv.OpFromProto(bc.GetOp()), Name: bc.GetName(), Location: bc.GetLocation(),
			ACL: bc.GetAcl(), IfRevision: bc.GetIfRevision(),
		}
		if err := checkBatchOp(bc.GetOp(), cmd); err != nil {
			resp.Results[i] = batchError(err)
			continue
		}
		cmds = append(cmds, cmd)
		slot = append(slot, i)
	}
	res, err := d.s.dir.Write(ctx, caller(ctx), cmds...)
	if err != nil {
		return nil, dirStatus("batch", err) // nothing committed: the client may retry the call
	}
	for j, r := range res {
		if r.Err != nil {
			resp.Results[slot[j]] = batchError(dirStatus("batch", r.Err))
			continue
		}
		resp.Results[slot[j]] = &rookeryv1.BatchResult{Revision: r.Revision}
		resp.Revision = max(resp.Revision, r.Revision)
	}
	return resp, nil
}

// checkBatchOp rejects operations a Batch may not carry before the common
// field checks.
func checkBatchOp(op rookeryv1.Operation, cmd fsm.Command) error {
	switch op {
	case rookeryv1.Operation_OPERATION_RESERVE, rookeryv1.Operation_OPERATION_ACTIVATE,
		rookeryv1.Operation_OPERATION_DEACTIVATE, rookeryv1.Operation_OPERATION_DELETE:
		return requireFields(cmd)
	}
	return invalid("op", "must be RESERVE, ACTIVATE, DEACTIVATE or DELETE, not %s", op)
}

func batchError(err error) *rookeryv1.BatchResult {
	st := status.Convert(err)
	return &rookeryv1.BatchResult{Code: int32(st.Code()), Message: st.Message()}
}
