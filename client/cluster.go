package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Status returns the status of the first node that answers.
func (c *Client) Status(ctx context.Context) (*rookeryv1.StatusResponse, error) {
	var resp *rookeryv1.StatusResponse
	err := c.do(ctx, read, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.cl.Status(ctx, &rookeryv1.StatusRequest{})
		return err
	})
	return resp, err
}

// StatusOf returns the status of one endpoint (as named in Endpoints),
// without failover: etcdctl's "endpoint status".
func (c *Client) StatusOf(ctx context.Context, addr string) (*rookeryv1.StatusResponse, error) {
	for _, ep := range c.eps {
		if ep.addr == addr {
			actx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
			defer cancel()
			resp, err := ep.cl.Status(actx, &rookeryv1.StatusRequest{})
			if err != nil {
				return nil, &EndpointError{Endpoint: addr, Err: err}
			}
			return resp, nil
		}
	}
	return nil, fmt.Errorf("client: %q is not an endpoint", addr)
}

// Members returns the raft configuration as the answering node sees it.
func (c *Client) Members(ctx context.Context) ([]*rookeryv1.Member, error) {
	var resp *rookeryv1.MembersResponse
	err := c.do(ctx, read, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.cl.Members(ctx, &rookeryv1.MembersRequest{})
		return err
	})
	return resp.GetMembers(), err
}

// AddVoter adds (or promotes) a voting member.
func (c *Client) AddVoter(ctx context.Context, id, raftAddr, apiAddr string) (uint64, error) {
	var resp *rookeryv1.AddMemberResponse
	err := c.do(ctx, write, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.cl.AddVoter(ctx, &rookeryv1.AddMemberRequest{Id: id, RaftAddress: raftAddr, ApiAddress: apiAddr})
		return err
	})
	return resp.GetIndex(), err
}

// AddNonvoter adds a member that replicates without voting.
func (c *Client) AddNonvoter(ctx context.Context, id, raftAddr, apiAddr string) (uint64, error) {
	var resp *rookeryv1.AddMemberResponse
	err := c.do(ctx, write, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.cl.AddNonvoter(ctx, &rookeryv1.AddMemberRequest{Id: id, RaftAddress: raftAddr, ApiAddress: apiAddr})
		return err
	})
	return resp.GetIndex(), err
}

// RemoveServer removes a member.
func (c *Client) RemoveServer(ctx context.Context, id string) (uint64, error) {
	var resp *rookeryv1.RemoveServerResponse
	err := c.do(ctx, write, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.cl.RemoveServer(ctx, &rookeryv1.RemoveServerRequest{Id: id})
		return err
	})
	return resp.GetIndex(), err
}

// TransferLeadership hands leadership to id ("" lets raft choose) and
// returns the new leader's ID.
func (c *Client) TransferLeadership(ctx context.Context, id string) (string, error) {
	var resp *rookeryv1.TransferLeadershipResponse
	err := c.do(ctx, write, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.cl.TransferLeadership(ctx, &rookeryv1.TransferLeadershipRequest{Id: id})
		return err
	})
	return resp.GetLeaderId(), err
}

// CheckConsistency has the answering node compare every member's
// directory hash at its current revision (see cluster.Node.CheckConsistency).
func (c *Client) CheckConsistency(ctx context.Context) (*rookeryv1.ConsistencyReport, error) {
	var resp *rookeryv1.ConsistencyReport
	err := c.do(ctx, read, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.cl.CheckConsistency(ctx, &rookeryv1.CheckConsistencyRequest{})
		return err
	})
	return resp, err
}

// Snapshot writes a consistent FSM snapshot (the fsm's versioned format)
// to w and returns its revision and size. It fails over to another node
// only until the first byte has been written.
func (c *Client) Snapshot(ctx context.Context, w io.Writer) (rev uint64, n int64, err error) {
	err = c.do(ctx, readLong, func(ctx context.Context, ep *endpoint) error {
		st, err := ep.cl.Snapshot(ctx, &rookeryv1.SnapshotRequest{})
		if err != nil {
			return err
		}
		for {
			chunk, err := st.Recv()
			if errors.Is(err, io.EOF) {
				if n == 0 {
					return status.Error(codes.DataLoss, "snapshot stream ended without data")
				}
				return nil
			}
			if err != nil {
				if n > 0 {
					// Written bytes cannot be taken back: no failover.
					return status.Errorf(codes.Aborted, "snapshot interrupted after %d bytes: %v", n, err)
				}
				return err
			}
			if n == 0 {
				rev = chunk.GetRevision()
			}
			m, err := w.Write(chunk.GetData())
			n += int64(m)
			if err != nil {
				return status.Errorf(codes.Aborted, "writing snapshot: %v", err)
			}
		}
	})
	return rev, n, err
}
