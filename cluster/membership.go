package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/metadata"

	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Suffrage is a member's voting status.
type Suffrage int

const (
	Voter Suffrage = iota + 1
	Nonvoter
	Staging
)

func (s Suffrage) String() string {
	switch s {
	case Voter:
		return "voter"
	case Nonvoter:
		return "nonvoter"
	case Staging:
		return "staging"
	}
	return fmt.Sprintf("Suffrage(%d)", int(s))
}

func suffrageOf(s raft.ServerSuffrage) Suffrage {
	switch s {
	case raft.Voter:
		return Voter
	case raft.Nonvoter:
		return Nonvoter
	default:
		return Staging
	}
}

// Member is one server in the raft configuration as this node sees it.
type Member struct {
	Peer
	Suffrage Suffrage
	Leader   bool
	// LastContact is when this node last heard from the member: now for
	// itself; for the leader as seen by a follower, raft's last contact; for
	// followers as seen by the leader, now unless heartbeats are failing.
	// Zero when unknown.
	LastContact time.Time
}

// Members lists the raft configuration.
func (n *Node) Members(ctx context.Context) ([]Member, error) {
	if n.closed.Load() {
		return nil, ErrShutdown
	}
	f := n.raft.GetConfiguration()
	if err := waitFuture(ctx, f); err != nil {
		return nil, n.raftError("read configuration", err)
	}
	_, leaderID := n.raft.LeaderWithID()
	isLeader := n.raft.State() == raft.Leader
	now := time.Now()
	var out []Member
	for _, s := range f.Configuration().Servers {
		id := string(s.ID)
		m := Member{
			Peer:     Peer{ID: id, RaftAddr: string(s.Address), APIAddr: n.apiAddrOf(id)},
			Suffrage: suffrageOf(s.Suffrage),
			Leader:   s.ID == leaderID,
		}
		switch {
		case id == n.cfg.NodeID:
			m.LastContact = now
		case isLeader:
			if t, failing := n.health.lastContact(id); failing {
				m.LastContact = t
			} else {
				m.LastContact = now
			}
		case m.Leader:
			m.LastContact = n.raft.LastContact()
		}
		out = append(out, m)
	}
	return out, nil
}

// AddVoter adds p as a voter and records its gRPC address in the replicated
// peer map. On a follower the request is forwarded to the leader.
func (n *Node) AddVoter(ctx context.Context, p Peer) error {
	return n.addMember(ctx, p, true)
}

// AddNonvoter adds p as a non-voting member that receives the log but does
// not count for quorum (a read replica, or a node catching up before it is
// promoted with AddVoter).
func (n *Node) AddNonvoter(ctx context.Context, p Peer) error {
	return n.addMember(ctx, p, false)
}

func (n *Node) addMember(ctx context.Context, p Peer, voter bool) error {
	if n.closed.Load() {
		return ErrShutdown
	}
	if err := checkPeer(p); err != nil {
		return err
	}
	ctx, cancel := n.withWriteTimeout(ctx)
	defer cancel()
	_, err := n.addServer(ctx, p, voter)
	return err
}

func checkPeer(p Peer) error {
	if p.ID == "" {
		return errors.New("cluster: member ID is empty")
	}
	if err := checkAddr(p.RaftAddr, true); err != nil {
		return fmt.Errorf("cluster: member %q raft address: %w", p.ID, err)
	}
	if err := checkAddr(p.APIAddr, false); err != nil {
		return fmt.Errorf("cluster: member %q API address: %w", p.ID, err)
	}
	return nil
}

// addServer adds p on the leader, locally or by forwarding Peer.Join, and
// retries while leadership is moving. Adding a member that is already
// present with the same address changes nothing, so retries are safe.
func (n *Node) addServer(ctx context.Context, p Peer, voter bool) (uint64, error) {
	backoff := 10 * time.Millisecond
	var last error
	for {
		var (
			index uint64
			err   error
		)
		if n.raft.State() == raft.Leader {
			index, err = n.addServerLocal(ctx, p, voter)
		} else if leader := n.Leader(); leader.ID == "" || leader.APIAddr == "" {
			err = fmt.Errorf("%w: no reachable leader known", errNotApplied)
		} else {
			index, err = n.forwardJoin(ctx, leader.APIAddr, p, voter, true)
		}
		if err == nil || !errors.Is(err, errNotApplied) {
			return index, err
		}
		last = err
		if !n.sleepCtx(ctx, backoff) {
			return 0, n.ctxError(ctx, "add member "+p.ID, last)
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// addServerLocal changes the configuration on this node, which must lead.
// The address goes into the peer map first, so the member is reachable for
// forwarding as soon as it can win an election.
func (n *Node) addServerLocal(ctx context.Context, p Peer, voter bool) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, errNotLeaderLocal
	}
	if _, _, err := n.propose(ctx, []fsm.Command{{Op: fsm.OpSetPeer, Name: p.ID, Location: p.APIAddr}}); err != nil {
		return 0, err
	}
	defer n.changingMembers()()
	var f raft.IndexFuture
	if voter {
		f = n.raft.AddVoter(raft.ServerID(p.ID), raft.ServerAddress(p.RaftAddr), 0, n.cfg.WriteTimeout)
	} else {
		f = n.raft.AddNonvoter(raft.ServerID(p.ID), raft.ServerAddress(p.RaftAddr), 0, n.cfg.WriteTimeout)
	}
	if err := waitFuture(ctx, f); err != nil {
		return 0, n.raftError("add member "+p.ID, err)
	}
	n.logger.Info("added member", "id", p.ID, "raft_addr", p.RaftAddr, "api_addr", p.APIAddr, "voter", voter)
	return f.Index(), nil
}

// forwardJoin asks the member at addr to add p.
func (n *Node) forwardJoin(ctx context.Context, addr string, p Peer, voter, forwarded bool) (uint64, error) {
	client, err := n.peers.ready(ctx, addr)
	if err != nil {
		return 0, err
	}
	var md []string
	if forwarded {
		md = append(md, mdForwarded, "1")
	}
	if !voter {
		md = append(md, mdSuffrage, nonvoter)
	}
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	resp, err := client.Join(ctx, &rookeryv1.AddMemberRequest{Id: p.ID, RaftAddress: p.RaftAddr, ApiAddress: p.APIAddr})
	if err != nil {
		return 0, fromPeerError(Peer{ID: addr, APIAddr: addr}, err)
	}
	return resp.GetIndex(), nil
}

// join asks the members in cfg.Join, in turn, to add this node as a voter.
func (n *Node) join(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 6*n.cfg.WriteTimeout)
		defer cancel()
	}
	self := Peer{ID: n.cfg.NodeID, RaftAddr: n.RaftAddr(), APIAddr: n.cfg.APIAddr}
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		addr := n.cfg.Join[attempt%len(n.cfg.Join)]
		actx, cancel := n.withWriteTimeout(ctx)
		_, err := n.forwardJoin(actx, addr, self, true, false)
		cancel()
		if err == nil {
			n.logger.Info("joined cluster", "via", addr)
			return nil
		}
		n.logger.Warn("join attempt failed", "via", addr, "error", err)
		if !errors.Is(err, errNotApplied) && !errors.Is(err, ErrUnavailable) {
			return fmt.Errorf("cluster: join via %s: %w", addr, err)
		}
		if !n.sleepCtx(ctx, backoff) {
			return fmt.Errorf("cluster: join via %v: %w", n.cfg.Join, n.ctxError(ctx, "join", err))
		}
		backoff = min(2*backoff, time.Second)
	}
}

// RemoveServer removes a member from the configuration (and its address
// from the peer map). It must run on the leader: a follower returns a
// *NotLeaderError naming it.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if err := n.requireLeader(); err != nil {
		return err
	}
	if id == "" {
		return errors.New("cluster: remove server: empty ID")
	}
	ctx, cancel := n.withWriteTimeout(ctx)
	defer cancel()
	if _, _, err := n.propose(ctx, []fsm.Command{{Op: fsm.OpSetPeer, Name: id}}); err != nil {
		return err
	}
	defer n.changingMembers()()
	if err := waitFuture(ctx, n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.WriteTimeout)); err != nil {
		return n.raftError("remove server "+id, err)
	}
	n.logger.Info("removed member", "id", id)
	return nil
}

// TransferLeadership hands leadership to the member id, or to the most
// up-to-date voter when id is empty. It must run on the leader.
func (n *Node) TransferLeadership(ctx context.Context, id string) error {
	if err := n.requireLeader(); err != nil {
		return err
	}
	ctx, cancel := n.withWriteTimeout(ctx)
	defer cancel()
	var f raft.Future
	if id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		if id == n.cfg.NodeID {
			return nil
		}
		members, err := n.Members(ctx)
		if err != nil {
			return err
		}
		var target *Member
		for i := range members {
			if members[i].ID == id {
				target = &members[i]
			}
		}
		if target == nil {
			return fmt.Errorf("cluster: transfer leadership: %q is not a member", id)
		}
		if target.Suffrage != Voter {
			return fmt.Errorf("cluster: transfer leadership: %q is not a voter", id)
		}
		f = n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(target.RaftAddr))
	}
	if err := waitFuture(ctx, f); err != nil {
		return n.raftError("transfer leadership", err)
	}
	return nil
}

func (n *Node) requireLeader() error {
	if n.closed.Load() {
		return ErrShutdown
	}
	if n.raft.State() != raft.Leader {
		return &NotLeaderError{Leader: n.Leader()}
	}
	return nil
}

// raftError wraps an error from a raft future: leadership problems become
// errNotApplied (retryable) or ErrUnavailable, context ends become
// ErrUnavailable timeouts.
func (n *Node) raftError(what string, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %s: %w", errNotApplied, what, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		if n.closed.Load() {
			return ErrShutdown
		}
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
	default:
		return fmt.Errorf("cluster: %s: %w", what, err)
	}
}
