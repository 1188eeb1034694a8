package api

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/cluster"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// clusterServer implements rookery.v1.Cluster.
type clusterServer struct {
	rookeryv1.UnimplementedClusterServer
	s *Server
}

// Status reports this node's view: raft state, indexes, members, last
// snapshot, and the directory's size per state and per server.
func (c *clusterServer) Status(ctx context.Context, _ *rookeryv1.StatusRequest) (*rookeryv1.StatusResponse, error) {
	st := c.s.node.Status()
	stats := c.s.dir.Stats()
	resp := &rookeryv1.StatusResponse{
		NodeId:              st.NodeID,
		State:               st.State,
		LeaderId:            st.Leader.ID,
		LeaderAddress:       st.Leader.APIAddr,
		Term:                st.Term,
		CommitIndex:         st.CommitIndex,
		AppliedIndex:        st.AppliedIndex,
		Revision:            st.Revision,
		CompactRevision:     c.s.dir.CompactRevision(),
		Members:             membersToProto(st.Members),
		MailboxesActive:     stats.Active,
		MailboxesReserved:   stats.Reserved,
		LastContactUnixNano: unixNano(st.LastContact),
		LastSnapshot: &rookeryv1.SnapshotInfo{
			Id:    st.LastSnapshot.ID,
			Index: st.LastSnapshot.Index,
			Term:  st.LastSnapshot.Term,
			Size:  st.LastSnapshot.Size,
		},
	}
	for _, s := range stats.Servers {
		resp.Servers = append(resp.Servers, &rookeryv1.ServerCount{Server: s.Server, Active: s.Active, Reserved: s.Reserved})
	}
	resp.Condition, resp.Alarms, resp.DataDir = st.Condition, cluster.AlarmsToProto(st.Alarms), st.DataDir
	if st.LastConsistencyCheck != nil {
		resp.LastConsistencyCheck = cluster.ConsistencyReportToProto(*st.LastConsistencyCheck)
	}
	return resp, nil
}

// CheckConsistency compares every member's directory hash now.
func (c *clusterServer) CheckConsistency(ctx context.Context, _ *rookeryv1.CheckConsistencyRequest) (*rookeryv1.ConsistencyReport, error) {
	rep, err := c.s.node.CheckConsistency(ctx)
	if err != nil {
		return nil, nodeStatus("check consistency", err)
	}
	c.s.log.Info("consistency check", "summary", rep.Summary, "by", callerName(ctx))
	return cluster.ConsistencyReportToProto(rep), nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func membersToProto(ms []cluster.Member) []*rookeryv1.Member {
	out := make([]*rookeryv1.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, &rookeryv1.Member{
			Id:                  m.ID,
			RaftAddress:         m.RaftAddr,
			ApiAddress:          m.APIAddr,
			Suffrage:            suffrageToProto(m.Suffrage),
			Leader:              m.Leader,
			LastContactUnixNano: unixNano(m.LastContact),
		})
	}
	return out
}

func suffrageToProto(s cluster.Suffrage) rookeryv1.Suffrage {
	switch s {
	case cluster.Voter:
		return rookeryv1.Suffrage_SUFFRAGE_VOTER
	case cluster.Nonvoter:
		return rookeryv1.Suffrage_SUFFRAGE_NONVOTER
	case cluster.Staging:
		return rookeryv1.Suffrage_SUFFRAGE_STAGING
	}
	return rookeryv1.Suffrage_SUFFRAGE_UNSPECIFIED
}

// Members lists the raft configuration.
func (c *clusterServer) Members(ctx context.Context, _ *rookeryv1.MembersRequest) (*rookeryv1.MembersResponse, error) {
	ms, err := c.s.node.Members(ctx)
	if err != nil {
		return nil, nodeStatus("members", err)
	}
	return &rookeryv1.MembersResponse{Members: membersToProto(ms)}, nil
}

// AddVoter adds or promotes a voter (forwarded to the leader by the node).
func (c *clusterServer) AddVoter(ctx context.Context, req *rookeryv1.AddMemberRequest) (*rookeryv1.AddMemberResponse, error) {
	p, err := peerOf(req)
	if err != nil {
		return nil, err
	}
	if err := c.s.node.AddVoter(ctx, p); err != nil {
		return nil, nodeStatus("add voter "+p.ID, err)
	}
	c.s.log.Info("member added", "id", p.ID, "voter", true, "by", callerName(ctx))
	return &rookeryv1.AddMemberResponse{Index: c.s.node.Status().CommitIndex}, nil
}

// AddNonvoter adds a non-voting member.
func (c *clusterServer) AddNonvoter(ctx context.Context, req *rookeryv1.AddMemberRequest) (*rookeryv1.AddMemberResponse, error) {
	p, err := peerOf(req)
	if err != nil {
		return nil, err
	}
	if err := c.s.node.AddNonvoter(ctx, p); err != nil {
		return nil, nodeStatus("add nonvoter "+p.ID, err)
	}
	c.s.log.Info("member added", "id", p.ID, "voter", false, "by", callerName(ctx))
	return &rookeryv1.AddMemberResponse{Index: c.s.node.Status().CommitIndex}, nil
}

func peerOf(req *rookeryv1.AddMemberRequest) (cluster.Peer, error) {
	switch {
	case req.GetId() == "":
		return cluster.Peer{}, invalid("id", "must not be empty")
	case req.GetRaftAddress() == "":
		return cluster.Peer{}, invalid("raft_address", "must not be empty (IP:port)")
	case req.GetApiAddress() == "":
		return cluster.Peer{}, invalid("api_address", "must not be empty (host:port)")
	}
	return cluster.Peer{ID: req.GetId(), RaftAddr: req.GetRaftAddress(), APIAddr: req.GetApiAddress()}, nil
}

// RemoveServer removes a member; it must reach the leader (a follower
// answers FAILED_PRECONDITION naming the leader).
func (c *clusterServer) RemoveServer(ctx context.Context, req *rookeryv1.RemoveServerRequest) (*rookeryv1.RemoveServerResponse, error) {
	if req.GetId() == "" {
		return nil, invalid("id", "must not be empty")
	}
	if err := c.s.node.RemoveServer(ctx, req.GetId()); err != nil {
		return nil, nodeStatus("remove server "+req.GetId(), err)
	}
	c.s.log.Info("member removed", "id", req.GetId(), "by", callerName(ctx))
	return &rookeryv1.RemoveServerResponse{Index: c.s.node.Status().CommitIndex}, nil
}

// TransferLeadership hands leadership over and waits (briefly) until this
// node knows the new leader, so the answer names it.
func (c *clusterServer) TransferLeadership(ctx context.Context, req *rookeryv1.TransferLeadershipRequest) (*rookeryv1.TransferLeadershipResponse, error) {
	old := c.s.node.Leader().ID
	if err := c.s.node.TransferLeadership(ctx, req.GetId()); err != nil {
		return nil, nodeStatus("transfer leadership", err)
	}
	c.s.log.Info("leadership transferred", "from", old, "to", req.GetId(), "by", callerName(ctx))
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		l := c.s.node.Leader().ID
		if l != "" && (l != old || req.GetId() == old) {
			return &rookeryv1.TransferLeadershipResponse{LeaderId: l}, nil
		}
		select {
		case <-wctx.Done():
			return &rookeryv1.TransferLeadershipResponse{LeaderId: l}, nil
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Snapshot streams the node's store as of now, in the fsm snapshot format
// (the same bytes raft snapshots hold), without stopping writes.
func (c *clusterServer) Snapshot(_ *rookeryv1.SnapshotRequest, stream grpc.ServerStreamingServer[rookeryv1.SnapshotChunk]) error {
	snap := c.s.dir.Snapshot()
	w := &chunkWriter{stream: stream, size: c.s.cfg.SnapshotChunkSize, revision: snap.Revision(), first: true}
	if _, err := snap.WriteTo(w); err != nil {
		if _, ok := status.FromError(err); ok {
			return err
		}
		return status.Errorf(codes.Internal, "snapshot: %v", err)
	}
	if err := w.flush(); err != nil {
		return err
	}
	c.s.log.Info("snapshot streamed", "revision", snap.Revision(), "bytes", w.total, "by", callerName(stream.Context()))
	return nil
}

// chunkWriter cuts the snapshot byte stream into messages.
type chunkWriter struct {
	stream   grpc.ServerStreamingServer[rookeryv1.SnapshotChunk]
	size     int
	buf      []byte
	revision uint64
	first    bool
	total    int64
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := w.size - len(w.buf)
		take := min(room, len(p))
		w.buf = append(w.buf, p[:take]...)
		p = p[take:]
		if len(w.buf) == w.size {
			if err := w.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 && !w.first {
		return nil
	}
	msg := &rookeryv1.SnapshotChunk{Data: w.buf}
	if w.first {
		msg.Revision = w.revision
		w.first = false
	}
	if err := w.stream.Send(msg); err != nil {
		return err
	}
	w.total += int64(len(w.buf))
	w.buf = make([]byte, 0, w.size)
	return nil
}

func callerName(ctx context.Context) string {
	if id, ok := IdentityFromContext(ctx); ok {
		return id.Name
	}
	return ""
}
