package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/migrate"
)

// cmdImport loads a directory into Rookery through the Batch API: from a
// running Cyrus mupdate master (optionally following its changes), from a
// `ctl_mboxlist -d` dump, or from a Rookery snapshot file.
func cmdImport(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("import", e.stderr)
	fromMupdate := fs.String("from-mupdate", "", "HOST:PORT of a running Cyrus mupdate master to copy (as a slave: UPDATE)")
	user := fs.String("user", "", "identity to log in to the mupdate master with (--from-mupdate)")
	passwordFile := fs.String("password-file", "", "file holding its password (default: $ROOKERY_IMPORT_PASSWORD)")
	follow := fs.Bool("follow", false, "keep mirroring the master's changes until interrupted (--from-mupdate)")
	fromDump := fs.String("from-dump", "", "file with the output of Cyrus's `ctl_mboxlist -d` (- for stdin)")
	server := fs.String("server", "", "servername for dump records without one (a backend's local dump)")
	fromSnapshot := fs.String("from-snapshot", "", "a Rookery snapshot file (rookeryctl snapshot save) to load into a running cluster")
	mergeFlag := fs.String("merge", "", "into a non-empty directory: skip-existing (keep Rookery's entry) or overwrite")
	batch := fs.Int("batch", 4096, "commands per Batch call")
	concurrency := fs.Int("concurrency", 4, "Batch calls in flight")
	if _, err := e.parseCommand(fs, args, 0, 0, ""); err != nil {
		return err
	}
	sources := 0
	for _, s := range []string{*fromMupdate, *fromDump, *fromSnapshot} {
		if s != "" {
			sources++
		}
	}
	if sources != 1 {
		return usagef("give exactly one of --from-mupdate, --from-dump, --from-snapshot")
	}
	if *fromMupdate == "" && (*follow || *user != "" || *passwordFile != "") {
		return usagef("--follow, --user and --password-file go with --from-mupdate")
	}
	if *fromMupdate != "" && *user == "" {
		return usagef("--from-mupdate needs --user")
	}
	merge, err := migrate.ParseMerge(*mergeFlag)
	if err != nil {
		return usagef("--merge: %v", err)
	}
	if *batch < 1 || *batch > client.MaxBatch || *concurrency < 1 {
		return usagef("--batch must be 1..%d and --concurrency at least 1", client.MaxBatch)
	}
	for _, f := range []string{*fromDump, *fromSnapshot} {
		if f != "" && f != "-" {
			if _, err := os.Stat(f); err != nil {
				return err
			}
		}
	}
	var password string
	if *fromMupdate != "" {
		if password, err = importPassword(*passwordFile, e.getenv); err != nil {
			return err
		}
	}
	cl, err := e.leaderFirstClient(ctx)
	if err != nil {
		return err
	}
	existing, err := e.importTarget(ctx, cl, merge)
	if err != nil {
		return err
	}
	lcfg := migrate.LoaderConfig{BatchSize: *batch, Concurrency: *concurrency, Merge: merge, Existing: existing}
	var conflicts, failures atomic.Int64
	lcfg.OnConflict = func(c migrate.Conflict) {
		conflicts.Add(1)
		what := "overwritten"
		if c.KeptTarget {
			what = "kept Rookery's"
		}
		fmt.Fprintf(e.stderr, "conflict: %s: rookery has %s, source has %s (%s)\n", c.Name, describeEntry(c.Target), describeEntry(c.Source), what)
	}
	lcfg.OnFailure = func(f migrate.Failure) {
		failures.Add(1)
		fmt.Fprintf(e.stderr, "failed: %s %s: %s\n", f.Op, f.Name, f.Message)
	}

	var stats migrate.Stats
	switch {
	case *fromMupdate != "":
		stats, err = e.importMupdate(ctx, cl, migrate.MirrorConfig{Addr: *fromMupdate, User: *user, Password: password, Follow: *follow}, lcfg)
	case *fromDump != "":
		stats, err = e.importFile(ctx, cl, *fromDump, lcfg, func(r io.Reader, add func(migrate.Entry) error) error {
			skipped, err := migrate.ReadDump(r, *server, add)
			if skipped > 0 {
				fmt.Fprintf(e.stderr, "skipped %d deleted or intermediate records (not in the MUPDATE directory)\n", skipped)
			}
			return err
		})
	default:
		stats, err = e.importFile(ctx, cl, *fromSnapshot, lcfg, readSnapshotEntries)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "imported: %d written, %d unchanged, %d conflicts (%d kept as they were), %d failed\n",
		stats.Written, stats.Unchanged, stats.Conflicts, stats.Skipped, stats.Failed)
	if failures.Load() > 0 {
		return exitError{exitFailed}
	}
	return nil
}

// leaderFirstClient dials the endpoints with the leader's first when it is
// one of them: a bulk load sent to a follower costs that follower a
// decode and re-encode of every command to forward it.
func (e *env) leaderFirstClient(ctx context.Context) (*client.Client, error) {
	cl, err := e.client()
	if err != nil {
		return nil, err
	}
	sctx, cancel := e.timed(ctx)
	defer cancel()
	st, err := cl.Status(sctx)
	if err != nil {
		return nil, err
	}
	eps := cl.Endpoints()
	for i, ep := range eps {
		for _, m := range st.GetMembers() {
			if m.GetId() == st.GetLeaderId() && m.GetApiAddress() == ep && i > 0 {
				e.global.endpoints = strings.Join(append([]string{ep}, append(eps[:i:i], eps[i+1:]...)...), ",")
				e.close()
				e.cl = nil
				return e.client()
			}
		}
	}
	return cl, nil
}

// importTarget refuses a non-empty directory unless a merge mode is given,
// and then reads it (by name) to find conflicts.
func (e *env) importTarget(ctx context.Context, cl *client.Client, merge migrate.Merge) (map[string]fsm.Entry, error) {
	var first string
	if _, err := cl.List(ctx, client.ListOptions{Limit: 1}, func(en fsm.Entry) error { first = en.Name; return nil }); err != nil {
		return nil, fmt.Errorf("read the target directory: %w", err)
	}
	if first == "" {
		return nil, nil
	}
	if merge == migrate.MergeNone {
		return nil, fmt.Errorf("the directory is not empty (it holds %s, ...): give --merge=skip-existing or --merge=overwrite to import into it", first)
	}
	existing := map[string]fsm.Entry{}
	rev, err := cl.List(ctx, client.ListOptions{}, func(en fsm.Entry) error { existing[en.Name] = en; return nil })
	if err != nil {
		return nil, fmt.Errorf("read the target directory: %w", err)
	}
	fmt.Fprintf(e.stderr, "merging into %d existing entries (revision %d)\n", len(existing), rev)
	return existing, nil
}

func (e *env) importMupdate(ctx context.Context, cl *client.Client, mcfg migrate.MirrorConfig, lcfg migrate.LoaderConfig) (migrate.Stats, error) {
	var bar *progress
	var follow atomic.Pointer[migrate.FollowStats]
	mcfg.OnDump = func(total int, stats func() migrate.Stats) {
		fmt.Fprintf(e.stderr, "received the master's full dump: %d entries\n", total)
		bar = startProgress(e.stderr, "writing dump", int64(total), func() (int64, string) {
			s := stats()
			return s.Read, fmt.Sprintf("(%d written)", s.Written)
		})
	}
	mcfg.OnDumpWritten = func(s migrate.Stats) {
		bar.finish()
		bar = nil
		fmt.Fprintf(e.stderr, "dump written: %d written, %d unchanged, %d conflicts, %d failed\n", s.Written, s.Unchanged, s.Conflicts, s.Failed)
		if mcfg.Follow {
			fmt.Fprintln(e.stderr, "following the master's changes (interrupt to stop)")
			bar = startProgress(e.stderr, "mirrored changes:", 0, func() (int64, string) {
				fs := follow.Load()
				if fs == nil {
					return 0, "lag -"
				}
				return fs.Changes, fmt.Sprintf("lag %s, %d pending", fs.Lag.Round(time.Millisecond), fs.Pending)
			})
		}
	}
	mcfg.OnProgress = func(fs migrate.FollowStats) { follow.Store(&fs) }
	mcfg.OnFailure = lcfg.OnFailure
	stats, err := migrate.Mirror(ctx, mcfg, cl, lcfg)
	if bar != nil {
		bar.finish()
	}
	return stats, err
}

// importFile streams entries from a file (or stdin) into the loader with a
// progress bar over the bytes read.
func (e *env) importFile(ctx context.Context, cl *client.Client, path string, lcfg migrate.LoaderConfig, read func(io.Reader, func(migrate.Entry) error) error) (migrate.Stats, error) {
	var in io.Reader = os.Stdin
	var size int64
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return migrate.Stats{}, err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			size = st.Size()
		}
		in = f
	}
	cr := &countingReader{r: bufio.NewReaderSize(in, 1<<20)}
	l := migrate.NewLoader(ctx, cl, lcfg)
	bar := startProgress(e.stderr, "importing", size, func() (int64, string) {
		s := l.Stats()
		return cr.n.Load(), fmt.Sprintf("bytes, %d entries read, %d written", s.Read, s.Written)
	})
	rerr := read(cr, l.Add)
	stats, lerr := l.Close()
	bar.finish()
	return stats, errors.Join(rerr, lerr)
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// readSnapshotEntries reads a Rookery snapshot file into memory and hands
// out its entries (RESERVED ones as reservations).
func readSnapshotEntries(r io.Reader, add func(migrate.Entry) error) error {
	st := fsm.New(fsm.Config{HistorySize: -1})
	if err := st.Restore(r); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	var err error
	st.View().ScanName("", func(en fsm.Entry) bool {
		err = add(migrate.Entry{Name: en.Name, Location: en.Location, ACL: en.ACL, Reserved: en.State == fsm.StateReserved})
		return err == nil
	})
	return err
}

// importPassword reads the mupdate master's password from a file or the
// environment, never from the command line (which ps shows to everyone).
func importPassword(file string, getenv func(string) string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--password-file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	if pw := getenv("ROOKERY_IMPORT_PASSWORD"); pw != "" {
		return pw, nil
	}
	return "", usagef("no password for the mupdate master: set ROOKERY_IMPORT_PASSWORD or give --password-file")
}

func describeEntry(en migrate.Entry) string {
	if en.Reserved {
		return "RESERVED at " + en.Location
	}
	return fmt.Sprintf("ACTIVE at %s acl %q", en.Location, formatACL(en.ACL))
}
