package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/rookery/rookery/internal/mupdateclient"
)

// runCleanup deletes every entry whose name starts with --prefix, for
// example what earlier runs left behind on a Rookery cluster.
func runCleanup(ctx context.Context, log *slog.Logger, out io.Writer, args []string) error {
	cfg := mupdateclient.DefaultConfig()
	fs := flag.NewFlagSet("cleanup", flag.ContinueOnError)
	addr := fs.String("target", "", "host:port (or name=host:port) of the MUPDATE server")
	prefix := fs.String("prefix", "", "delete entries whose name starts with this (at least \"user.bench\" or \"user.cmb\" long)")
	conns := fs.Int("conns", 8, "connections to delete over")
	fs.StringVar(&cfg.User, "user", cfg.User, "PLAIN user")
	fs.StringVar(&cfg.Password, "pass", cfg.Password, "PLAIN password")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, a, ok := strings.Cut(*addr, "="); ok {
		*addr = a
	}
	if *addr == "" {
		return fmt.Errorf("--target is required")
	}
	// Refuse short prefixes: this must never wipe a real directory.
	if !strings.HasPrefix(*prefix, "user.bench") && !strings.HasPrefix(*prefix, "user.cmb") {
		return fmt.Errorf("--prefix %q: only bench names (user.bench..., user.cmb...) may be cleaned up", *prefix)
	}
	c, err := mupdateclient.Dial(ctx, *addr, cfg)
	if err != nil {
		return err
	}
	all, err := c.List(ctx, "")
	_ = c.Logout(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range all {
		if strings.HasPrefix(e.Name, *prefix) {
			names = append(names, e.Name)
		}
	}
	log.Info("cleanup", "target", *addr, "prefix", *prefix, "matching", len(names), "of", len(all))
	s := deleteNames(ctx, *addr, cfg, names, *conns)
	fmt.Fprintf(out, "cleanup %s: %d of %d entries matched %q; deleted %d in %s, errors=%d\n",
		*addr, len(names), len(all), *prefix, len(s.lat), ms(s.elapsed), s.errors)
	if s.firstErr != nil {
		return fmt.Errorf("first DELETE error: %w", s.firstErr)
	}
	return nil
}
