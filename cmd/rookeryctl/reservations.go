package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/rookery/rookery/api"
	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// cmdReservations lists RESERVED entries: the names a crashed create or
// XFER left "unreachable and un-createable".
func cmdReservations(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("reservations", e.stderr)
	olderThan := fs.Duration("older-than", 0, "only reservations made longer ago than this (e.g. 15m)")
	stale := fs.Bool("stale", false, "read the answering node's local state")
	if _, err := e.parseCommand(fs, args, 0, 0, ""); err != nil {
		return err
	}
	if *olderThan < 0 {
		return usagef("--older-than must not be negative")
	}
	cl, err := e.client()
	if err != nil {
		return err
	}
	var before time.Time
	if *olderThan > 0 {
		before = time.Now().Add(-*olderThan)
	}
	ctx, cancel := e.timed(ctx)
	defer cancel()
	var entries []fsm.Entry
	rev, err := cl.ListReservations(ctx, before, *stale, func(en fsm.Entry) error {
		entries = append(entries, en)
		return nil
	})
	if err != nil {
		return err
	}
	if e.json() {
		resp := &rookeryv1.ListResponse{Revision: rev}
		for _, en := range entries {
			resp.Mailboxes = append(resp.Mailboxes, api.MailboxToProto(en))
		}
		return printJSON(e.stdout, resp)
	}
	t := newTable(e.stdout)
	fmt.Fprintln(t, "NAME\tLOCATION\tRESERVED_BY\tSINCE\tAGE\tREVISION")
	for _, en := range entries {
		since := "-"
		if en.ReservedAt != 0 {
			since = time.Unix(0, en.ReservedAt).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%d\n", en.Name, dash(en.Location), dash(en.ReservedBy), since, unixNanoText(en.ReservedAt), en.ModRevision)
	}
	t.Flush()
	fmt.Fprintf(e.stdout, "(%d reservations at revision %d)\n", len(entries), rev)
	return nil
}

// cmdRelease removes a reservation, and only if it is still the same one:
// with --revision, the one listed at that revision; without, the one there
// now. A backend that activated the name meanwhile wins.
func cmdRelease(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("release", e.stderr)
	revFlag := fs.String("revision", "", "the reservation's revision as listed by `reservations` (default: the current reservation)")
	pos, err := e.parseCommand(fs, args, 1, 1, "NAME")
	if err != nil {
		return err
	}
	var rev uint64
	if *revFlag != "" {
		if rev, err = strconv.ParseUint(*revFlag, 10, 64); err != nil || rev == 0 {
			return usagef("--revision must be a positive revision, not %q", *revFlag)
		}
	}
	cl, err := e.client()
	if err != nil {
		return err
	}
	ctx, cancel := e.timed(ctx)
	defer cancel()
	done, err := cl.Release(ctx, pos[0], rev)
	if err != nil {
		return err
	}
	if e.json() {
		return printJSON(e.stdout, &rookeryv1.WriteResponse{Revision: done})
	}
	fmt.Fprintf(e.stdout, "OK released %s at revision %d\n", pos[0], done)
	return nil
}
