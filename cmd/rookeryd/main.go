// Command rookeryd runs one Rookery node: a Raft member holding the mailbox
// directory, serving MUPDATE (RFC 3656) to Cyrus and gRPC to tools and
// gateways.
//
//	rookeryd -config /etc/rookery/node.toml
//	rookeryd -node.id n1 -node.data_dir ./data/n1 -raft.bootstrap ...
//	rookeryd hash-password < password.txt   # prints a bcrypt hash for auth.users_file
//	rookeryd --version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rookery/rookery/config"
	"github.com/rookery/rookery/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "hash-password" {
		return hashPassword(stdin, stdout, stderr)
	}
	if version.Requested(args) {
		fmt.Fprintln(stdout, version.String("rookeryd"))
		return 0
	}
	if wantsHelp(args) {
		fmt.Fprint(stderr, usageHeader)
	}
	cfg := defaultConfig()
	if err := config.Load("rookeryd", args, &cfg, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "rookeryd: %v\n", err)
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "rookeryd: invalid configuration:\n%v\n", indent(err.Error()))
		return 2
	}
	logger, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "rookeryd: %v\n", err)
		return 2
	}
	reg, err := newRegistry()
	if err != nil {
		fmt.Fprintf(stderr, "rookeryd: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, cfg, logger, reg); err != nil {
		logger.Error("rookeryd stopped", "err", err)
		fmt.Fprintf(stderr, "rookeryd: %v\n", err)
		return 1
	}
	return 0
}

// usageHeader comes before the list of settings that -h prints.
const usageHeader = `usage: rookeryd [-config FILE] [-SETTING=VALUE ...]   run a node
       rookeryd hash-password < FILE                  print a bcrypt hash of the password
                                                      read from stdin, for auth.users_file
       rookeryd --version                             print the version and exit

Every setting can be given in the TOML file or as a flag named after its path:
`

func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

func newLogger(c LogConfig, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level %q: %w", c.Level, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.Format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log.format %q: want text or json", c.Format)
}
