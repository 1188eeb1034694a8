// Command rookery-bench puts the same MUPDATE load on several servers in one
// run (the real Cyrus mupdate master and a Rookery node, typically) and
// prints the figures side by side with their ratio.
//
//	rookery-bench mupdate     --target cyrus=127.0.0.1:13905 --target rookery=127.0.0.1:3905 ...
//	rookery-bench ctlmboxlist --backend cyrus=DIR/be1/imapd.conf --backend rookery=DIR/be2/imapd.conf ...
//	rookery-bench cleanup     --target 127.0.0.1:3905 --prefix user.bench
//	rookery-bench fill        --total 1000000 --dump FILE --cyrus-master-conf DIR/master/imapd.conf
//	rookery-bench floor       --listen 127.0.0.1:3990 --dir DIR
//
// Run a subcommand with -h for its flags. scripts/bench-mupdate.sh starts a
// real Cyrus murder and runs the first two against it and against Rookery.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/rookery/rookery/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(ctx, log, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "rookery-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, args []string) error {
	if len(args) == 0 {
		usage()
		return flag.ErrHelp
	}
	if version.Requested(args) {
		fmt.Println(version.String("rookery-bench"))
		return nil
	}
	switch args[0] {
	case "mupdate":
		return runMupdate(ctx, log, os.Stdout, args[1:])
	case "ctlmboxlist":
		return runCtlMboxlist(ctx, log, os.Stdout, args[1:])
	case "cleanup":
		return runCleanup(ctx, log, os.Stdout, args[1:])
	case "fill":
		return runFill(ctx, log, os.Stdout, args[1:])
	case "floor":
		return runFloor(ctx, log, os.Stdout, args[1:])
	case "floor-follower":
		return runFloorFollower(ctx, log, os.Stdout, args[1:])
	case "-h", "-help", "--help", "help":
		usage()
		return nil
	}
	usage()
	return fmt.Errorf("unknown subcommand %q", args[0])
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: rookery-bench SUBCOMMAND [flags]

  mupdate      MUPDATE load (creates per new connection and persistent, FIND,
               UPDATE stream delay) against one or more --target name=host:port
  ctlmboxlist  time Cyrus "ctl_mboxlist -m" on backends with many local
               mailboxes missing on their MUPDATE server
  cleanup      DELETE every entry whose name starts with --prefix
  fill         generate --total mailboxes on other servers as a dump for
               rookeryctl import and/or into a stopped Cyrus master
  floor        serve MUPDATE from the leanest three-process replication
               (internal/floor): the machine's limit beside Rookery and Cyrus

Run "rookery-bench SUBCOMMAND -h" for the flags.
`)
}
