package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Verdicts on one member in a ConsistencyReport.
const (
	VerdictMatch       = "match"       // holds the majority's hash
	VerdictDiverged    = "diverged"    // holds another hash
	VerdictUnavailable = "unavailable" // did not answer at the revision
)

// MemberHash is one member's answer in a consistency check.
type MemberHash struct {
	ID       string
	Suffrage Suffrage
	Hash     fsm.Hash // zero when unavailable
	Verdict  string
	// Err says why the member did not answer, or that its own recompute
	// disagreed with its running hash.
	Err string
	// behind is the member's revision when it had not applied the one
	// asked for in time (0 otherwise).
	behind uint64
}

// ConsistencyReport is the outcome of one consistency check: every
// member's directory hash at one revision, compared.
type ConsistencyReport struct {
	Revision  uint64
	CheckedBy string
	At        time.Time
	// QuorumHash is the hash a majority of voters hold at Revision;
	// HasQuorum is false when no hash has a majority.
	QuorumHash fsm.Hash
	HasQuorum  bool
	// Consistent: every member answered and holds QuorumHash.
	Consistent bool
	Members    []MemberHash
	Summary    string
}

// Diverged lists the members whose hash differs from the majority's.
func (r ConsistencyReport) Diverged() []string {
	var ids []string
	for _, m := range r.Members {
		if m.Verdict == VerdictDiverged {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

// consistency is a node's consistency checker state.
type consistency struct {
	mu   sync.Mutex
	last *ConsistencyReport
}

func (c *consistency) setLast(r ConsistencyReport) {
	c.mu.Lock()
	c.last = &r
	c.mu.Unlock()
}

// LastConsistencyCheck is the report of the latest check this node ran;
// false before the first.
func (n *Node) LastConsistencyCheck() (ConsistencyReport, bool) {
	n.consistency.mu.Lock()
	defer n.consistency.mu.Unlock()
	if n.consistency.last == nil {
		return ConsistencyReport{}, false
	}
	return *n.consistency.last, true
}

// CheckConsistency compares the directory of every member, as etcd's
// corruption check does: it takes this node's current revision R, asks
// every member for its hash at R (waiting, within WriteTimeout, for
// members that have not applied R yet) after having each one recompute
// its hash from its entries, and compares. A member whose hash differs
// from the majority's is asked to run a check of its own, which raises its
// "diverged" alarm and makes it refuse reads. The report is returned even
// when some members could not answer; an error means the check could not
// run at all.
func (n *Node) CheckConsistency(ctx context.Context) (ConsistencyReport, error) {
	rep, err := n.checkConsistency(ctx, true)
	if err != nil {
		return rep, err
	}
	var wg sync.WaitGroup
	for _, m := range rep.Members {
		if m.Verdict != VerdictDiverged || m.ID == n.cfg.NodeID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.askCheck(ctx, m.ID); err != nil {
				n.logger.Warn("could not have a diverged member check itself", "member", m.ID, "error", err)
			}
		}()
	}
	wg.Wait()
	return rep, nil
}

// checkConsistency runs one check at this node's current revision and
// acts on what it finds about this node. verifyAll has every member
// recompute its hash from its entries first; this node always does.
func (n *Node) checkConsistency(ctx context.Context, verifyAll bool) (ConsistencyReport, error) {
	if n.closed.Load() {
		return ConsistencyReport{}, ErrShutdown
	}
	ctx, cancel := n.withWriteTimeout(ctx)
	defer cancel()
	members, err := n.Members(ctx)
	if err != nil {
		return ConsistencyReport{}, err
	}
	rep := ConsistencyReport{Revision: n.store.Revision(), CheckedBy: n.cfg.NodeID}
	rep.Members = n.memberHashes(ctx, members, rep.Revision, verifyAll)
	// Members that had not reached this node's revision (it may lead, or
	// be a node whose revisions ran ahead of everyone's) are compared at
	// the oldest revision they have all reached instead, once.
	common := rep.Revision
	for _, m := range rep.Members {
		if m.behind > 0 {
			common = min(common, m.behind)
		}
	}
	if common < rep.Revision {
		rep.Revision = common
		rep.Members = n.memberHashes(ctx, members, common, false)
	}
	rep.At = time.Now()
	judge(&rep)
	n.consistency.setLast(rep)
	n.actOnReport(rep)
	return rep, nil
}

// memberHashes asks every member for its hash at rev, in parallel.
func (n *Node) memberHashes(ctx context.Context, members []Member, rev uint64, verify bool) []MemberHash {
	out := make([]MemberHash, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = n.memberHash(ctx, m, rev, verify)
		}()
	}
	wg.Wait()
	return out
}

// memberHash asks one member (this node included) for its hash at rev.
func (n *Node) memberHash(ctx context.Context, m Member, rev uint64, verify bool) MemberHash {
	mh := MemberHash{ID: m.ID, Suffrage: m.Suffrage, Verdict: VerdictUnavailable}
	if m.ID == n.cfg.NodeID {
		if err := n.verifyLocal(); err != nil {
			mh.Err = err.Error()
		}
		h, err := n.store.HashAt(rev)
		if err != nil {
			mh.Err = err.Error()
			return mh
		}
		mh.Hash, mh.Verdict = h, ""
		return mh
	}
	if m.APIAddr == "" {
		mh.Err = "no gRPC address known"
		return mh
	}
	client, err := n.peers.ready(ctx, m.APIAddr)
	if err != nil {
		mh.Err = err.Error()
		return mh
	}
	resp, err := client.ConsistencyHash(ctx, &rookeryv1.ConsistencyHashRequest{Revision: rev, Verify: verify})
	if err != nil {
		mh.Err = err.Error()
		return mh
	}
	mh.Err = resp.GetVerifyError()
	if !resp.GetAvailable() {
		if cur := resp.GetCurrentRevision(); cur < rev {
			mh.behind = cur
		}
		mh.Err = strings.TrimPrefix(fmt.Sprintf("%s; hashes kept for revisions %d..%d", mh.Err, resp.GetOldestRevision(), resp.GetCurrentRevision()), "; ")
		return mh
	}
	h, err := fsm.HashFromBytes(resp.GetHash())
	if err != nil {
		mh.Err = err.Error()
		return mh
	}
	mh.Hash, mh.Verdict = h, ""
	return mh
}

// judge fills in the verdicts: the hash held by a majority of voters is
// the reference.
func judge(rep *ConsistencyReport) {
	voters := 0
	count := map[fsm.Hash]int{}
	for _, m := range rep.Members {
		if m.Suffrage != Voter {
			continue
		}
		voters++
		if m.Verdict != VerdictUnavailable {
			count[m.Hash]++
		}
	}
	for h, c := range count {
		if c > voters/2 {
			rep.QuorumHash, rep.HasQuorum = h, true
		}
	}
	answered, diverged := 0, 0
	for i := range rep.Members {
		m := &rep.Members[i]
		if m.Verdict == VerdictUnavailable {
			continue
		}
		answered++
		switch {
		case rep.HasQuorum && m.Hash == rep.QuorumHash:
			m.Verdict = VerdictMatch
		case rep.HasQuorum:
			m.Verdict = VerdictDiverged
			diverged++
		case len(count) > 1:
			m.Verdict = VerdictDiverged // no majority: nobody can be trusted
			diverged++
		default:
			m.Verdict = VerdictMatch // all answers agree, but too few answered
		}
	}
	rep.Consistent = rep.HasQuorum && diverged == 0 && answered == len(rep.Members)
	switch {
	case rep.Consistent:
		rep.Summary = fmt.Sprintf("consistent: all %d members hold %s at revision %d", answered, rep.QuorumHash, rep.Revision)
	case rep.HasQuorum && diverged > 0:
		rep.Summary = fmt.Sprintf("INCONSISTENT at revision %d: %s differ from the majority's %s", rep.Revision, strings.Join(rep.Diverged(), ", "), rep.QuorumHash)
	case len(count) > 1:
		rep.Summary = fmt.Sprintf("INCONSISTENT at revision %d: members disagree and no hash has a majority of the %d voters", rep.Revision, voters)
	case rep.HasQuorum:
		rep.Summary = fmt.Sprintf("no divergence at revision %d, but only %d of %d members answered", rep.Revision, answered, len(rep.Members))
	default:
		rep.Summary = fmt.Sprintf("undecided at revision %d: only %d of %d members answered, fewer than a majority of voters", rep.Revision, answered, len(rep.Members))
	}
}

// actOnReport raises or clears this node's alarms from a report, and logs
// any divergence found.
func (n *Node) actOnReport(rep ConsistencyReport) {
	var self *MemberHash
	for i := range rep.Members {
		if rep.Members[i].ID == n.cfg.NodeID {
			self = &rep.Members[i]
		}
	}
	if self == nil || self.Verdict == VerdictUnavailable {
		return
	}
	switch {
	case self.Verdict == VerdictDiverged && rep.HasQuorum:
		n.logger.Error("consistency check: this node's directory differs from the majority's",
			"revision", rep.Revision, "hash", self.Hash.String(), "majority_hash", rep.QuorumHash.String(), "summary", rep.Summary)
		n.alarms.raise(Alarm{
			Kind: AlarmDiverged, BlocksReads: true, NeedsRestart: true,
			Message: fmt.Sprintf("directory hash %s at revision %d differs from the majority's %s; re-seed this node (rookeryctl member reseed %s)",
				self.Hash, rep.Revision, rep.QuorumHash, n.cfg.NodeID),
		})
		n.stepDownIfUnhealthy()
	case self.Verdict == VerdictDiverged:
		n.logger.Error("consistency check: members disagree and no hash has a majority", "revision", rep.Revision, "hash", self.Hash.String(), "summary", rep.Summary)
		n.alarms.raise(Alarm{
			Kind: AlarmInconsistent, BlocksReads: true,
			Message: fmt.Sprintf("at revision %d members hold different directory hashes and none has a majority (%s)", rep.Revision, memberHashes(rep)),
		})
		n.stepDownIfUnhealthy()
	case rep.HasQuorum:
		n.alarms.clear(AlarmInconsistent)
		if d := rep.Diverged(); len(d) > 0 {
			n.logger.Error("consistency check: members differ from the majority", "revision", rep.Revision, "diverged", d, "majority_hash", rep.QuorumHash.String(), "hashes", memberHashes(rep))
		}
	}
}

func memberHashes(rep ConsistencyReport) string {
	var b strings.Builder
	for i, m := range rep.Members {
		if i > 0 {
			b.WriteString(", ")
		}
		if m.Verdict == VerdictUnavailable {
			fmt.Fprintf(&b, "%s=?", m.ID)
		} else {
			fmt.Fprintf(&b, "%s=%s", m.ID, m.Hash)
		}
	}
	return b.String()
}

// verifyLocal recomputes this node's hash from its entries; a mismatch
// raises the data-check alarm.
func (n *Node) verifyLocal() error {
	_, _, err := n.store.VerifyHash()
	var me *fsm.HashMismatchError
	if errors.As(err, &me) {
		n.alarms.raise(Alarm{
			Kind: AlarmDataCheck, BlocksReads: true, NeedsRestart: true,
			Message: fmt.Sprintf("entries in memory hash to %s at revision %d but their running hash is %s; restart this node", me.Computed, me.Revision, me.Maintained),
		})
		n.stepDownIfUnhealthy()
	}
	return err
}

// stepDownIfUnhealthy hands leadership away while this node's data cannot
// be trusted: the leader's state machine answers every write.
func (n *Node) stepDownIfUnhealthy() {
	a, bad := n.alarms.blocking()
	if !bad || n.closed.Load() || n.raft.State() != raft.Leader {
		return
	}
	n.logger.Error("transferring leadership away from a node whose data cannot be trusted", "alarm", a.Kind)
	f := n.raft.LeadershipTransfer()
	n.goFunc(func() {
		if err := f.Error(); err != nil {
			n.logger.Warn("leadership transfer failed; will retry", "error", err)
		}
	})
}

// askCheck has member id run a consistency check of its own.
func (n *Node) askCheck(ctx context.Context, id string) error {
	addr := n.apiAddrOf(id)
	if addr == "" {
		return fmt.Errorf("no gRPC address known for %s", id)
	}
	client, err := n.peers.ready(ctx, addr)
	if err != nil {
		return err
	}
	_, err = client.CheckConsistency(ctx, &rookeryv1.CheckConsistencyRequest{})
	return err
}

// runConsistencyChecks checks this node against the others every
// ConsistencyCheckInterval (jittered, so members do not all ask at once),
// the first time soon after start so a restarted node that is still
// diverged is caught quickly. Every second it also hands leadership away
// if it leads while its data cannot be trusted.
func (n *Node) runConsistencyChecks() {
	interval := n.cfg.ConsistencyCheckInterval
	jitter := func(d time.Duration) time.Duration { return d - d/10 + rand.N(d/5+1) }
	var checks <-chan time.Time // nil: periodic checks disabled
	var next *time.Timer
	if interval > 0 {
		next = time.NewTimer(jitter(min(interval, firstConsistencyCheck)))
		defer next.Stop()
		checks = next.C
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
			n.stepDownIfUnhealthy()
		case <-checks:
			rep, err := n.checkConsistency(n.ctx, false)
			switch {
			case err != nil:
				n.logger.Debug("consistency check could not run", "error", err)
			case rep.Consistent:
				n.logger.Debug("consistency check", "summary", rep.Summary)
			default:
				n.logger.Warn("consistency check", "summary", rep.Summary)
			}
			next.Reset(jitter(interval))
		}
	}
}

// firstConsistencyCheck is how soon after start a node first checks.
const firstConsistencyCheck = 15 * time.Second

// consistencyHash serves Peer.ConsistencyHash.
func (n *Node) consistencyHash(ctx context.Context, req *rookeryv1.ConsistencyHashRequest) *rookeryv1.ConsistencyHashResponse {
	resp := &rookeryv1.ConsistencyHashResponse{NodeId: n.cfg.NodeID}
	if req.GetVerify() {
		if err := n.verifyLocal(); err != nil {
			resp.VerifyError = err.Error()
		}
	}
	rev := req.GetRevision()
	// Answer within half the caller's budget (it allows WriteTimeout), so
	// a member that lags says what it has rather than time out.
	wctx, cancel := context.WithTimeout(ctx, n.cfg.WriteTimeout/2)
	_ = n.WaitRevision(wctx, rev) // on timeout, HashAt says what is available
	cancel()
	h, err := n.store.HashAt(rev)
	var he *fsm.HashUnavailableError
	switch {
	case err == nil:
		resp.Available, resp.Hash, resp.CurrentRevision = true, h.Bytes(), n.store.Revision()
	case errors.As(err, &he):
		resp.CurrentRevision, resp.OldestRevision = he.Current, he.Oldest
	}
	return resp
}
