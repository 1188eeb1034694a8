package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/rookery/rookery/api"
	"github.com/rookery/rookery/client"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// errWatchDone ends a watch after --count events.
var errWatchDone = errors.New("enough events")

// cmdWatch prints changes as they happen, one line each, until
// interrupted or --count events have been printed. It survives node
// failures: the client reconnects to another endpoint and resumes, and
// after a compaction prints the re-listed state as RESET lines.
func cmdWatch(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("watch", e.stderr)
	from := fs.String("from", "now", "print changes after this revision; \"oldest\": every change the node still keeps; \"now\": only new ones")
	prefix := fs.String("prefix", "", "only names starting with this prefix")
	location := fs.String("location", "", "only changes whose location (old or new) starts with this prefix")
	count := fs.Int("count", 0, "exit after this many events (0: run until interrupted)")
	progress := fs.Bool("progress", false, "print progress notices (# revision N)")
	if _, err := e.parseCommand(fs, args, 0, 0, ""); err != nil {
		return err
	}
	if *prefix != "" && *location != "" {
		return usagef("--prefix and --location cannot be combined")
	}
	if *count < 0 {
		return usagef("--count must not be negative")
	}
	opts := client.WatchOptions{NamePrefix: *prefix, LocationPrefix: *location, Progress: *progress}
	switch *from {
	case "now", "0":
		opts.FromNow = true
	case "oldest":
		opts.FromOldest = true
	default:
		rev, err := strconv.ParseUint(*from, 10, 64)
		if err != nil {
			return usagef("--from wants a revision, \"oldest\" or \"now\", not %q", *from)
		}
		opts.FromRevision = rev
	}
	cl, err := e.client()
	if err != nil {
		return err
	}
	if !e.json() {
		fmt.Fprintln(e.stdout, watchHeader)
	}
	seen := 0
	err = cl.WatchDirectory(ctx, opts, func(u client.Update) error {
		switch u := u.(type) {
		case *client.Reset:
			if err := e.printReset(u); err != nil {
				return err
			}
		case *client.Events:
			if len(u.Events) == 0 {
				fmt.Fprintf(e.stdout, "# revision %d\n", u.Revision)
			}
			for _, ev := range u.Events {
				if e.json() {
					if err := eventJSON(e.stdout, ev); err != nil {
						return err
					}
				} else {
					fmt.Fprintln(e.stdout, eventRow(ev))
				}
				seen++
				if *count > 0 && seen >= *count {
					return errWatchDone
				}
			}
		}
		return nil
	})
	if errors.Is(err, errWatchDone) || (err != nil && ctx.Err() != nil) {
		return nil // done, or interrupted by the operator
	}
	return err
}

// watchHeader names the tab-separated columns of watch's table output
// (eventRow; RESET lines have the same columns).
const watchHeader = "REVISION\tOP\tNAME\tSTATE\tLOCATION"

// printReset shows a re-listing: the history the watch needed was
// compacted, so the whole (filtered) state at a revision is printed.
func (e *env) printReset(r *client.Reset) error {
	if e.json() {
		resp := &rookeryv1.ListResponse{Revision: r.Revision}
		for _, en := range r.Entries {
			resp.Mailboxes = append(resp.Mailboxes, api.MailboxToProto(en))
		}
		b, err := marshalJSON(resp)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "{\"reset\":%s}\n", b)
		return err
	}
	fmt.Fprintf(e.stdout, "# history compacted: state at revision %d (%d entries)\n", r.Revision, len(r.Entries))
	for _, en := range r.Entries {
		fmt.Fprintf(e.stdout, "%d\tRESET\t%s\t%s\t%s\n", r.Revision, en.Name, en.State, dash(en.Location))
	}
	return nil
}
