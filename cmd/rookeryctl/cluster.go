package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/client"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// cmdStatus asks every endpoint for its status (like etcdctl endpoint
// status), so that one call shows who leads, who lags and who is down.
func cmdStatus(ctx context.Context, e *env, args []string) error {
	if _, err := e.parseCommand(newFlagSet("status", e.stderr), args, 0, 0, ""); err != nil {
		return err
	}
	cl, err := e.client()
	if err != nil {
		return err
	}
	ctx, cancel := e.timed(ctx)
	defer cancel()
	eps := cl.Endpoints()
	res := make([]*rookeryv1.StatusResponse, len(eps))
	errs := make([]error, len(eps))
	var wg sync.WaitGroup
	for i, ep := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = cl.StatusOf(ctx, ep)
		}()
	}
	wg.Wait()
	failed := 0
	var firstErr error
	for _, err := range errs {
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			msg, _ := explain(err)
			fmt.Fprintf(e.stderr, "rookeryctl status: %s\n", msg)
		}
	}
	if e.json() {
		for i, r := range res {
			if r != nil {
				b, err := marshalJSON(r)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "{\"endpoint\":%q,\"status\":%s}\n", eps[i], b)
			}
		}
	} else {
		printStatusTable(e, eps, res, errs)
	}
	if failed == 0 && unhealthy(res) {
		return exitError{exitFailed} // the alarms are printed with the table
	}
	if failed > 0 {
		// Each failure is printed above; the code is the first one's when
		// no endpoint answered, else 1 (the cluster is not all healthy).
		code := exitFailed
		if failed == len(eps) {
			_, code = explain(firstErr)
		}
		return exitError{code}
	}
	return nil
}

func printStatusTable(e *env, eps []string, res []*rookeryv1.StatusResponse, errs []error) {
	t := newTable(e.stdout)
	fmt.Fprintln(t, "ENDPOINT\tID\tSTATE\tLEADER\tTERM\tCOMMIT\tAPPLIED\tREVISION\tCOMPACT\tACTIVE\tRESERVED\tSNAPSHOT")
	var servers []*rookeryv1.ServerCount
	for i, r := range res {
		if r == nil {
			state := "UNREACHABLE"
			if c := status.Code(errs[i]); c != codes.Unavailable && c != codes.DeadlineExceeded {
				state = "ERROR"
			}
			fmt.Fprintf(t, "%s\t-\t%s\t\t\t\t\t\t\t\t\t\n", eps[i], state)
			continue
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", eps[i], r.GetNodeId(), stateOf(r), dash(r.GetLeaderId()),
			r.GetTerm(), r.GetCommitIndex(), r.GetAppliedIndex(), r.GetRevision(), r.GetCompactRevision(),
			r.GetMailboxesActive(), r.GetMailboxesReserved(), r.GetLastSnapshot().GetIndex())
		if servers == nil {
			servers = r.GetServers()
		}
	}
	t.Flush()
	printConditions(e, res)
	if len(servers) > 0 {
		fmt.Fprintln(e.stdout)
		t = newTable(e.stdout)
		fmt.Fprintln(t, "SERVER\tACTIVE\tRESERVED")
		for _, s := range servers {
			fmt.Fprintf(t, "%s\t%d\t%d\n", s.GetServer(), s.GetActive(), s.GetReserved())
		}
		t.Flush()
	}
}

func cmdMember(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usagef("want a subcommand: list, add, add-nonvoter, remove, reseed, transfer-leader")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "list":
		return memberList(ctx, e, args)
	case "add", "add-nonvoter":
		return memberAdd(ctx, e, sub, args)
	case "remove":
		return memberRemove(ctx, e, args)
	case "transfer-leader":
		return memberTransfer(ctx, e, args)
	case "reseed":
		return memberReseed(ctx, e, args)
	}
	return usagef("unknown subcommand %q: want list, add, add-nonvoter, remove, reseed, transfer-leader", sub)
}

func memberList(ctx context.Context, e *env, args []string) error {
	if _, err := e.parseCommand(newFlagSet("member list", e.stderr), args, 0, 0, ""); err != nil {
		return err
	}
	cl, err := e.client()
	if err != nil {
		return err
	}
	ctx, cancel := e.timed(ctx)
	defer cancel()
	ms, err := cl.Members(ctx)
	if err != nil {
		return err
	}
	if e.json() {
		return printJSON(e.stdout, &rookeryv1.MembersResponse{Members: ms})
	}
	t := newTable(e.stdout)
	fmt.Fprintln(t, "ID\tRAFT ADDRESS\tAPI ADDRESS\tSUFFRAGE\tLEADER\tLAST CONTACT")
	for _, m := range ms {
		suffrage := strings.ToLower(strings.TrimPrefix(m.GetSuffrage().String(), "SUFFRAGE_"))
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%v\t%s\n", m.GetId(), m.GetRaftAddress(), dash(m.GetApiAddress()), suffrage, m.GetLeader(), unixNanoText(m.GetLastContactUnixNano()))
	}
	return t.Flush()
}

func memberAdd(ctx context.Context, e *env, sub string, args []string) error {
	pos, err := e.parseCommand(newFlagSet("member "+sub, e.stderr), args, 3, 3, "ID RAFT_ADDRESS API_ADDRESS")
	if err != nil {
		return err
	}
	cl, err := e.client()
	if err != nil {
		return err
	}
	ctx, cancel := e.timed(ctx)
	defer cancel()
	add := cl.AddVoter
	if sub == "add-nonvoter" {
		add = cl.AddNonvoter
	}
	idx, err := add(ctx, pos[0], pos[1], pos[2])
	if err != nil {
		return err
	}
	if e.json() {
		return printJSON(e.stdout, &rookeryv1.AddMemberResponse{Index: idx})
	}
	fmt.Fprintf(e.stdout, "added %s (%s) at index %d\n", pos[0], strings.TrimPrefix(sub, "add-"), idx)
	return nil
}

func memberRemove(ctx context.Context, e *env, args []string) error {
	pos, err := e.parseCommand(newFlagSet("member remove", e.stderr), args, 1, 1, "ID")
	if err != nil {
		return err
	}
	return e.onLeader(ctx, func(ctx context.Context, cl *client.Client) error {
		idx, err := cl.RemoveServer(ctx, pos[0])
		if err != nil {
			return err
		}
		if e.json() {
			return printJSON(e.stdout, &rookeryv1.RemoveServerResponse{Index: idx})
		}
		fmt.Fprintf(e.stdout, "removed %s at index %d\n", pos[0], idx)
		return nil
	})
}

func memberTransfer(ctx context.Context, e *env, args []string) error {
	pos, err := e.parseCommand(newFlagSet("member transfer-leader", e.stderr), args, 0, 1, "[ID]")
	if err != nil {
		return err
	}
	target := ""
	if len(pos) == 1 {
		target = pos[0]
	}
	return e.onLeader(ctx, func(ctx context.Context, cl *client.Client) error {
		leader, err := cl.TransferLeadership(ctx, target)
		if err != nil {
			return err
		}
		if e.json() {
			return printJSON(e.stdout, &rookeryv1.TransferLeadershipResponse{LeaderId: leader})
		}
		fmt.Fprintf(e.stdout, "leader is now %s\n", leader)
		return nil
	})
}

// onLeader runs a leader-only operation. A follower answers
// FAILED_PRECONDITION naming the leader; the call is then repeated on the
// leader's API address (a direct connection when it is not an endpoint).
func (e *env) onLeader(ctx context.Context, fn func(context.Context, *client.Client) error) error {
	cl, err := e.client()
	if err != nil {
		return err
	}
	ctx, cancel := e.timed(ctx)
	defer cancel()
	err = fn(ctx, cl)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "not the leader") {
		return err
	}
	st, serr := cl.Status(ctx)
	if serr != nil || st.GetLeaderAddress() == "" {
		return err
	}
	cfg := client.DefaultConfig()
	cfg.TLS, _ = e.global.tlsConfig()
	cfg.Token = e.global.token
	lc, derr := client.Dial([]string{st.GetLeaderAddress()}, cfg)
	if derr != nil {
		return errors.Join(err, derr)
	}
	defer lc.Close()
	return fn(ctx, lc)
}
