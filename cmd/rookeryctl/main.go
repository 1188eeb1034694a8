// Command rookeryctl operates a Rookery cluster over its gRPC API, in the
// manner of etcdctl: cluster status and membership, directory reads and
// writes, watching the change feed, and snapshots.
//
//	rookeryctl [global flags] COMMAND [flags] [args]
//
// Exit codes: 0 success, 1 the operation failed (e.g. no such mailbox),
// 2 usage error, 3 the cluster was unreachable or unavailable.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rookery/rookery/internal/version"
)

const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnavailable = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// command is one subcommand (or group of them, like "member").
type command struct {
	name    string
	usage   string // arguments, after the name
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{"status", "", "status of every endpoint (raft state, indexes, mailbox counts)", cmdStatus},
		{"member", "list|add|add-nonvoter|remove|reseed|transfer-leader ...", "cluster membership; reseed ID replaces a member's data", cmdMember},
		{"check", "consistency", "compare every member's directory hash at one revision", cmdCheck},
		{"get", "NAME [--stale]", "one directory entry", cmdGet},
		{"list", "[--prefix P | --location L] [--limit N] [--after NAME] [--stale]", "directory entries in Cyrus order (streamed)", cmdList},
		{"reservations", "[--older-than D]", "RESERVED entries: name, location, by whom, since when", cmdReservations},
		{"release", "NAME [--revision R]", "remove a reservation if it is still the same one", cmdRelease},
		{"watch", "[--from REV|oldest|now] [--prefix P | --location L] [--count N]", "follow the change feed", cmdWatch},
		{"reserve", "NAME LOCATION", "reserve a name (MUPDATE RESERVE)", cmdReserve},
		{"activate", "NAME LOCATION ACL", "create or replace an active entry (MUPDATE ACTIVATE)", cmdActivate},
		{"deactivate", "NAME LOCATION", "return an active entry to reserved (MUPDATE DEACTIVATE)", cmdDeactivate},
		{"delete", "NAME", "remove an entry (MUPDATE DELETE)", cmdDelete},
		{"import", "--from-mupdate HOST:PORT --user NAME [--follow] | --from-dump FILE | --from-snapshot FILE [--merge M]", "load a directory through the bulk API (migration from a Cyrus master)", cmdImport},
		{"snapshot", "save FILE | status FILE | restore FILE --data-dir DIR --peers LIST", "save, inspect or restore a directory snapshot", cmdSnapshot},
	}
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if version.Requested(args) {
		fmt.Fprintln(stdout, version.String("rookeryctl"))
		return exitOK
	}
	e := &env{stdout: stdout, stderr: stderr, getenv: getenv}
	gfs := newFlagSet("rookeryctl", stderr)
	e.global.register(gfs, getenv)
	gfs.Usage = func() { usage(stderr) }
	rest, err := parseGlobal(gfs, args)
	if err != nil {
		return exitUsage // flag already printed the problem
	}
	if len(rest) == 0 {
		usage(stderr)
		return exitUsage
	}
	if rest[0] == "help" || rest[0] == "-h" || rest[0] == "--help" {
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == rest[0] {
			err := c.run(ctx, e, rest[1:])
			e.close()
			return report(stderr, c.name, err)
		}
	}
	fmt.Fprintf(stderr, "rookeryctl: unknown command %q (run rookeryctl help)\n", rest[0])
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: rookeryctl [global flags] COMMAND [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n  %-11s   %s\n", c.name, c.usage, "", c.summary)
	}
	fmt.Fprintln(w, "\nglobal flags (also accepted after the command):")
	fs := newFlagSet("rookeryctl", w)
	var g globalFlags
	g.register(fs, func(string) string { return "" })
	fs.PrintDefaults()
	fmt.Fprintln(w, "\nrookeryctl --version prints the version.")
	fmt.Fprintln(w, "\nexit codes: 0 ok, 1 operation failed, 2 usage error, 3 cluster unreachable or unavailable")
}

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// exitError ends a command with a code after it has printed its own
// messages.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// report prints err and maps it to an exit code.
func report(stderr io.Writer, cmd string, err error) int {
	if err == nil {
		return exitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ue usageError
	if errors.As(err, &ue) {
		if ue.msg != "" {
			fmt.Fprintf(stderr, "rookeryctl %s: %s\n", cmd, ue.msg)
		}
		return exitUsage
	}
	msg, code := explain(err)
	fmt.Fprintf(stderr, "rookeryctl %s: %s\n", cmd, msg)
	return code
}
