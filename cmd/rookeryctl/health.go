package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// stateOf is the STATE column: raft's state, or the node's condition
// ("Degraded", "Diverged", ...) when it has an alarm, so that a sick node
// never looks like a normal Follower.
func stateOf(r *rookeryv1.StatusResponse) string {
	if c := r.GetCondition(); c != "" {
		title, _, _ := strings.Cut(c, ":")
		return title + " (" + r.GetState() + ")"
	}
	return r.GetState()
}

// printConditions lists every alarm of every node under the status table.
func printConditions(e *env, res []*rookeryv1.StatusResponse) {
	first := true
	for _, r := range res {
		for _, a := range r.GetAlarms() {
			if first {
				fmt.Fprintln(e.stdout)
				first = false
			}
			extra := ""
			switch {
			case a.GetBlocksReads() && a.GetNeedsRestart():
				extra = " [reads refused; needs re-seed or restart]"
			case a.GetBlocksReads():
				extra = " [reads refused]"
			case a.GetNeedsRestart():
				extra = " [needs restart]"
			}
			fmt.Fprintf(e.stdout, "%s: %s: %s%s\n", r.GetNodeId(), a.GetKind(), a.GetMessage(), extra)
		}
	}
}

func unhealthy(res []*rookeryv1.StatusResponse) bool {
	for _, r := range res {
		if r != nil && len(r.GetAlarms()) > 0 {
			return true
		}
	}
	return false
}

// cmdCheck runs on-demand checks; "consistency" is the only one.
func cmdCheck(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "consistency" {
		return usagef("want a subcommand: consistency")
	}
	if _, err := e.parseCommand(newFlagSet("check consistency", e.stderr), args[1:], 0, 0, ""); err != nil {
		return err
	}
	cl, err := e.client()
	if err != nil {
		return err
	}
	ctx, cancel := e.timed(ctx)
	defer cancel()
	rep, err := cl.CheckConsistency(ctx)
	if err != nil {
		return err
	}
	if e.json() {
		if err := printJSON(e.stdout, rep); err != nil {
			return err
		}
	} else {
		printConsistency(e, rep)
	}
	if !rep.GetConsistent() {
		return exitError{exitFailed}
	}
	return nil
}

func printConsistency(e *env, rep *rookeryv1.ConsistencyReport) {
	t := newTable(e.stdout)
	fmt.Fprintln(t, "MEMBER\tHASH\tVERDICT\tNOTE")
	for _, m := range rep.GetMembers() {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", m.GetId(), dash(hex.EncodeToString(m.GetHash())), m.GetVerdict(), m.GetError())
	}
	t.Flush()
	fmt.Fprintf(e.stdout, "revision %d, checked by %s: %s\n", rep.GetRevision(), rep.GetCheckedBy(), rep.GetSummary())
}
