package main

import (
	"context"
	"fmt"

	"github.com/rookery/rookery/api"
	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

func cmdGet(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("get", e.stderr)
	stale := fs.Bool("stale", false, "read the answering node's local state (no leader round trip; may lag)")
	pos, err := e.parseCommand(fs, args, 1, 1, "NAME")
	if err != nil {
		return err
	}
	cl, err := e.client()
	if err != nil {
		return err
	}
	ctx, cancel := e.timed(ctx)
	defer cancel()
	entry, rev, err := cl.Get(ctx, pos[0], *stale)
	if err != nil {
		return err
	}
	if e.json() {
		return printJSON(e.stdout, &rookeryv1.GetResponse{Mailbox: api.MailboxToProto(entry), Revision: rev})
	}
	printEntries(e.stdout, []fsm.Entry{entry})
	return nil
}

func cmdList(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("list", e.stderr)
	prefix := fs.String("prefix", "", "only names starting with this prefix")
	location := fs.String("location", "", "only locations starting with this prefix (server!partition)")
	limit := fs.Int("limit", 0, "at most this many entries (0: all)")
	after := fs.String("after", "", "start after this name (Cyrus order): continue a listing cut by --limit")
	stale := fs.Bool("stale", false, "read the answering node's local state")
	if _, err := e.parseCommand(fs, args, 0, 0, ""); err != nil {
		return err
	}
	if *prefix != "" && *location != "" {
		return usagef("--prefix and --location cannot be combined")
	}
	if *limit < 0 {
		return usagef("--limit must not be negative")
	}
	cl, err := e.client()
	if err != nil {
		return err
	}
	// A listing of millions of entries takes longer than --timeout; each
	// page is bounded by it instead (the client's attempt timeout).
	opts := client.ListOptions{NamePrefix: *prefix, LocationPrefix: *location, Stale: *stale, StartAfter: *after}
	if *limit > 0 {
		opts.Limit = *limit + 1 // one more tells whether more exist
	}
	out := newEntryStream(e.stdout, e.json())
	var last string
	more := false
	rev, err := cl.List(ctx, opts, func(en fsm.Entry) error {
		if *limit > 0 && out.count == *limit {
			more = true
			return nil
		}
		last = en.Name
		return out.add(en)
	})
	if err != nil {
		return err
	}
	if err := out.finish(rev); err != nil {
		return err
	}
	if more {
		hint := fmt.Sprintf("more entries follow; continue with --after %s", shellQuote(last))
		if e.json() {
			fmt.Fprintf(e.stderr, "rookeryctl list: %s\n", hint)
		} else {
			fmt.Fprintf(e.stdout, "(%s)\n", hint)
		}
	}
	return nil
}

func cmdReserve(ctx context.Context, e *env, args []string) error {
	return e.write(ctx, "reserve", args, 2, "NAME LOCATION", func(ctx context.Context, cl *client.Client, a []string) (uint64, error) {
		return cl.Reserve(ctx, a[0], a[1])
	})
}

func cmdActivate(ctx context.Context, e *env, args []string) error {
	return e.write(ctx, "activate", args, 3, "NAME LOCATION ACL", func(ctx context.Context, cl *client.Client, a []string) (uint64, error) {
		acl, err := parseACL(a[2])
		if err != nil {
			return 0, usagef("%v", err)
		}
		return cl.Activate(ctx, a[0], a[1], acl)
	})
}

func cmdDeactivate(ctx context.Context, e *env, args []string) error {
	return e.write(ctx, "deactivate", args, 2, "NAME LOCATION", func(ctx context.Context, cl *client.Client, a []string) (uint64, error) {
		return cl.Deactivate(ctx, a[0], a[1])
	})
}

func cmdDelete(ctx context.Context, e *env, args []string) error {
	return e.write(ctx, "delete", args, 1, "NAME", func(ctx context.Context, cl *client.Client, a []string) (uint64, error) {
		return cl.Delete(ctx, a[0])
	})
}

// write runs one directory write and prints its revision.
func (e *env) write(ctx context.Context, name string, args []string, n int, argsUsage string, fn func(context.Context, *client.Client, []string) (uint64, error)) error {
	pos, err := e.parseCommand(newFlagSet(name, e.stderr), args, n, n, argsUsage)
	if err != nil {
		return err
	}
	cl, err := e.client()
	if err != nil {
		return err
	}
	ctx, cancel := e.timed(ctx)
	defer cancel()
	rev, err := fn(ctx, cl, pos)
	if err != nil {
		return err
	}
	if e.json() {
		return printJSON(e.stdout, &rookeryv1.WriteResponse{Revision: rev})
	}
	fmt.Fprintf(e.stdout, "OK revision %d\n", rev)
	return nil
}
