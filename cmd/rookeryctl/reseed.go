package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rookery/rookery/client"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// memberReseed replaces a member's data with a fresh copy from the
// others: member remove, a clean start of the node with an empty data
// directory, member add, catch-up by snapshot, consistency check.
//
// Wiping the data directory has to happen on the node's host, which
// rookeryctl cannot reach; so it does what it can remotely, prints the
// exact steps for the host, and waits until the node answers again with
// an empty state before adding it back. Run again with the addresses
// after an interruption: a node that is no longer a member skips straight
// to waiting.
func memberReseed(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("member reseed", e.stderr)
	wait := fs.Duration("wait", 30*time.Minute, "how long to wait for the node to come back empty (0: remove it, print the steps and exit)")
	poll := fs.Duration("poll", time.Second, "how often to look for the node while waiting")
	pos, err := e.parseCommand(fs, args, 1, 3, "ID [RAFT_ADDRESS API_ADDRESS]")
	if err != nil {
		return err
	}
	if len(pos) == 2 {
		return usagef("give both RAFT_ADDRESS and API_ADDRESS, or neither")
	}
	id := pos[0]
	cl, err := e.client()
	if err != nil {
		return err
	}
	ctx0 := ctx
	ctx, cancel := e.timed(ctx0)
	members, err := cl.Members(ctx)
	cancel()
	if err != nil {
		return err
	}
	var target *rookeryv1.Member
	var others []*rookeryv1.Member
	for _, m := range members {
		if m.GetId() == id {
			target = m
		} else {
			others = append(others, m)
		}
	}
	raftAddr, apiAddr := "", ""
	if len(pos) == 3 {
		raftAddr, apiAddr = pos[1], pos[2]
	}
	if target != nil {
		if raftAddr == "" {
			raftAddr, apiAddr = target.GetRaftAddress(), target.GetApiAddress()
		}
		if err := e.reseedRemove(ctx0, target, others); err != nil {
			return err
		}
	} else if raftAddr == "" {
		return fmt.Errorf("%s is not a member: give its RAFT_ADDRESS and API_ADDRESS to add it back", id)
	} else {
		fmt.Fprintf(e.stdout, "%s is not a member (already removed); waiting for it to come back empty\n", id)
	}
	if apiAddr == "" {
		return fmt.Errorf("no gRPC address known for %s: give RAFT_ADDRESS and API_ADDRESS", id)
	}
	if *wait <= 0 {
		fmt.Fprintf(e.stdout, "once it runs empty, add it back with: rookeryctl member reseed %s %s %s\n", id, raftAddr, apiAddr)
		return nil
	}
	if err := e.waitEmpty(ctx0, id, apiAddr, *wait, *poll); err != nil {
		return err
	}
	return e.reseedAdd(ctx0, cl, id, raftAddr, apiAddr, *wait, *poll)
}

// reseedRemove checks that the cluster can spare the member, removes it
// and prints what the operator must do on its host.
func (e *env) reseedRemove(ctx context.Context, target *rookeryv1.Member, others []*rookeryv1.Member) error {
	id := target.GetId()
	// The remaining voters must still have a majority up, or the removal
	// (and everything after it) would stall the cluster.
	voters, up := 0, 0
	var dataDir, condition string
	for _, m := range others {
		if m.GetSuffrage() != rookeryv1.Suffrage_SUFFRAGE_VOTER {
			continue
		}
		voters++
		if st, err := e.statusAt(ctx, m.GetApiAddress()); err == nil && st.GetLeaderId() != "" {
			up++
		}
	}
	if voters == 0 || up < voters/2+1 {
		return fmt.Errorf("refusing to remove %s: only %d of the %d other voters answer with a leader, fewer than a majority", id, up, voters)
	}
	if st, err := e.statusAt(ctx, target.GetApiAddress()); err == nil {
		dataDir, condition = st.GetDataDir(), st.GetCondition()
	}
	if condition != "" {
		fmt.Fprintf(e.stdout, "%s reports: %s\n", id, condition)
	}
	err := e.onLeader(ctx, func(ctx context.Context, cl *client.Client) error {
		if target.GetLeader() {
			if _, err := cl.TransferLeadership(ctx, ""); err != nil {
				return fmt.Errorf("move leadership away from %s first: %w", id, err)
			}
		}
		idx, err := cl.RemoveServer(ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "step 1/4: removed %s from the cluster at index %d\n", id, idx)
		return nil
	})
	if err != nil {
		return err
	}
	if dataDir == "" {
		dataDir = "<its node.data_dir>"
	}
	fmt.Fprintf(e.stdout, `step 2/4: on %s's host, wipe its data and start it empty:
    1. stop rookeryd on %s
    2. move the data directory aside (keep it to investigate) and recreate it empty:
         mv %s %s.reseed-%s && mkdir -m 700 %s
    3. start rookeryd with its usual configuration plus
         -raft.peers= -raft.join= -raft.bootstrap=false
       so that it neither bootstraps nor joins by itself but waits to be added
`, id, id, dataDir, dataDir, time.Now().UTC().Format("20060102T150405Z"), dataDir)
	return nil
}

// waitEmpty waits until the node at apiAddr answers with no state.
func (e *env) waitEmpty(ctx context.Context, id, apiAddr string, wait, poll time.Duration) error {
	fmt.Fprintf(e.stdout, "waiting up to %s for %s to answer empty at %s ...\n", wait, id, apiAddr)
	deadline := time.Now().Add(wait)
	said := ""
	for {
		st, err := e.statusAt(ctx, apiAddr)
		note := ""
		switch {
		case err != nil:
			note = "not answering (stopped?)"
		case st.GetNodeId() != id:
			note = fmt.Sprintf("answering as %q, not %s", st.GetNodeId(), id)
		case st.GetAppliedIndex() == 0 && st.GetRevision() == 0:
			fmt.Fprintf(e.stdout, "step 3/4: %s is running with an empty data directory\n", id)
			return nil
		default:
			note = fmt.Sprintf("still running on its old data (revision %d): stop it and empty its data directory", st.GetRevision())
		}
		if note != said {
			fmt.Fprintf(e.stdout, "  %s: %s\n", id, note)
			said = note
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not come back empty within %s; finish step 2, then run: rookeryctl member reseed %s RAFT_ADDRESS %s", id, wait, id, apiAddr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// reseedAdd adds the empty node back, waits for it to catch up and checks
// that its directory matches the others'.
func (e *env) reseedAdd(ctx context.Context, cl *client.Client, id, raftAddr, apiAddr string, wait, poll time.Duration) error {
	tctx, cancel := e.timed(ctx)
	idx, err := cl.AddVoter(tctx, id, raftAddr, apiAddr)
	cancel()
	if err != nil {
		return fmt.Errorf("add %s back: %w", id, err)
	}
	fmt.Fprintf(e.stdout, "step 4/4: added %s back as a voter at index %d; waiting for it to catch up ...\n", id, idx)
	deadline := time.Now().Add(wait)
	for {
		st, err := e.statusAt(ctx, apiAddr)
		if err == nil && st.GetAppliedIndex() >= idx {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s has not caught up to index %d within %s", id, idx, wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
	tctx, cancel = e.timed(ctx)
	defer cancel()
	rep, err := cl.CheckConsistency(tctx)
	if err != nil {
		return fmt.Errorf("%s caught up, but the consistency check failed: %w", id, err)
	}
	printConsistency(e, rep)
	if !rep.GetConsistent() {
		return exitError{exitFailed}
	}
	fmt.Fprintf(e.stdout, "%s re-seeded\n", id)
	return nil
}

// statusAt asks one address for its status, with the global credentials.
func (e *env) statusAt(ctx context.Context, addr string) (*rookeryv1.StatusResponse, error) {
	if addr == "" {
		return nil, errors.New("no address")
	}
	cfg := client.DefaultConfig()
	cfg.TLS, _ = e.global.tlsConfig()
	cfg.Token = e.global.token
	cfg.AttemptTimeout = e.global.timeout
	c, err := client.Dial([]string{addr}, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := e.timed(ctx)
	defer cancel()
	return c.StatusOf(ctx, addr)
}
