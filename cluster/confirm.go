package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
)

// confirmLeadership is the heartbeat round behind a leader's read index:
// it returns nil once a quorum of the voters, this node included, has
// accepted a heartbeat of term sent after the call began, and this node is
// still in term.
//
// It replaces raft's VerifyLeader, which counts every successful
// AppendEntries that completes while the verification is pending,
// including one sent before the read began. Since raft's own AppendEntries
// may be answered from an early batch's acknowledgement up to freshAck old
// (earlyAppend.answer), counting those would let a read be confirmed by a
// follower's word from before the read, when a newer leader may already
// have committed a write the read must see. Here only heartbeats sent
// after the read index was taken count: the read-index rule of the Raft
// thesis (§6.4).
//
// A follower that accepts a heartbeat of term had not voted in a later
// term when it accepted it, nor therefore when the read index was taken;
// with this node still in term afterwards (it had not voted either), no
// quorum can have elected a later leader before the index was taken.
func (n *Node) confirmLeadership(ctx context.Context, term uint64) error {
	peers, need, err := n.quorumPeers()
	if err != nil {
		return err
	}
	if need > 0 {
		if err := n.confirms.round(ctx, term, peers, need); err != nil {
			return err
		}
	}
	return n.stillIn(term)
}

// quorumPeers is the other voters of the latest configuration and how
// many of them make a quorum with this node: those that must accept a
// leader read's heartbeat, or store an entry for it to commit.
func (n *Node) quorumPeers() (peers []raft.Server, need int, err error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	self := raft.ServerID(n.cfg.NodeID)
	voters, selfVotes := 0, false
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if s.ID == self {
			selfVotes = true
		} else {
			peers = append(peers, s)
		}
	}
	if !selfVotes {
		return nil, 0, errNotLeaderLocal
	}
	return peers, voters / 2, nil // a majority is voters/2+1, this node one of them
}

// stillIn reports whether this node is still in term: a node that voted
// for a later leader has moved its term first.
func (n *Node) stillIn(term uint64) error {
	if now := n.raft.CurrentTerm(); now != term {
		return fmt.Errorf("%w: term moved from %d to %d", errNotLeaderLocal, term, now)
	}
	return nil
}

// confirmer sends the heartbeats of leader-read rounds, one goroutine per
// peer as raft's heartbeats are: a round begun while the previous
// heartbeat to a slow peer is still out is served by that peer's next
// heartbeat, not by another RPC alongside it. (Sending each round's own
// RPCs cost 67 µs a round against raft's 37 µs in
// BenchmarkReadConfirmation: the trailing RPC to the slower follower
// competed for the CPU with the next round.)
type confirmer struct {
	n *Node

	mu     sync.Mutex
	rounds uint64 // rounds begun
	term   uint64 // the latest round's term, which heartbeats carry
	peers  map[raft.ServerID]*confirmPeer
	// changed, when set, is closed by the next answer.
	changed chan struct{}
}

// confirmPeer is what one peer last answered; rounds up to sent began
// before its heartbeat was sent.
type confirmPeer struct {
	addr raft.ServerAddress
	kick chan struct{} // capacity 1: a heartbeat is wanted
	stop chan struct{} // closed when the peer left the configuration

	sent    uint64 // rounds begun when the last answered heartbeat was sent
	term    uint64 // that heartbeat's term
	ok      bool   // the peer accepted it
	newTerm uint64 // a later term the peer reported
}

// round begins a round in term and waits until need of peers accepted a
// heartbeat sent after it began, or ctx ends, or the round cannot succeed.
func (c *confirmer) round(ctx context.Context, term uint64, peers []raft.Server, need int) error {
	c.mu.Lock()
	c.rounds++
	r := c.rounds
	c.term = term
	ps := make([]*confirmPeer, len(peers))
	for i, s := range peers {
		ps[i] = c.peer(s)
		select {
		case ps[i].kick <- struct{}{}:
		default: // a heartbeat not yet sent will carry this round
		}
	}
	c.retire(peers)
	for {
		acks, refused := 0, 0
		for i, p := range ps {
			switch {
			case p.newTerm > term:
				c.mu.Unlock()
				return fmt.Errorf("%w: voter %s is in term %d", errNotLeaderLocal, peers[i].ID, p.newTerm)
			case p.sent < r:
			case p.ok && p.term == term:
				acks++
			default:
				refused++
			}
		}
		if acks >= need {
			c.mu.Unlock()
			return nil
		}
		if refused > len(peers)-need {
			c.mu.Unlock()
			return fmt.Errorf("%w: leadership in term %d not confirmed: %d of %d voters accepted", ErrUnavailable, term, acks, need)
		}
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.n.ctx.Done():
			return ErrShutdown
		}
		c.mu.Lock()
	}
}

// peer is s's state, its heartbeat goroutine started on first use; c.mu
// is held.
func (c *confirmer) peer(s raft.Server) *confirmPeer {
	p := c.peers[s.ID]
	if p == nil {
		if c.peers == nil {
			c.peers = map[raft.ServerID]*confirmPeer{}
		}
		p = &confirmPeer{kick: make(chan struct{}, 1), stop: make(chan struct{})}
		c.peers[s.ID] = p
		c.n.goFunc(func() { c.beat(s.ID, p) })
	}
	p.addr = s.Address
	return p
}

// retire stops the heartbeat goroutines of peers no longer among the
// configuration's voters (removed, or demoted); c.mu is held. A round
// still running with an older configuration keeps what they answered.
func (c *confirmer) retire(voters []raft.Server) {
	for id, p := range c.peers {
		if !slices.ContainsFunc(voters, func(s raft.Server) bool { return s.ID == id }) {
			close(p.stop)
			delete(c.peers, id)
		}
	}
}

// beat sends id a heartbeat each time one is wanted, until the peer is
// retired or the node stops.
func (c *confirmer) beat(id raft.ServerID, p *confirmPeer) {
	n := c.n
	for {
		select {
		case <-p.kick:
		case <-p.stop:
			return
		case <-n.ctx.Done():
			return
		}
		c.mu.Lock()
		sent, term, addr := c.rounds, c.term, p.addr
		c.mu.Unlock()
		req := raft.AppendEntriesRequest{RPCHeader: n.rpcHeader(), Term: term}
		var resp raft.AppendEntriesResponse
		err := n.trans.send(id, addr, &req, &resp)
		c.mu.Lock()
		p.sent, p.term, p.ok = sent, term, err == nil && resp.Success && resp.Term == term
		if err == nil && resp.Term > term {
			p.newTerm = max(p.newTerm, resp.Term)
		}
		if c.changed != nil {
			close(c.changed)
			c.changed = nil
		}
		c.mu.Unlock()
	}
}
