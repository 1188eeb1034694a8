package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/rookery/rookery/auth"
	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/mupdatecompat"
)

// directory adapts a cluster node to the MUPDATE session's Directory,
// marking cluster unavailability as temporary so Cyrus gets a NO it retries.
type directory struct{ node *cluster.Node }

var _ mupdatecompat.Finder = directory{}

// Apply does not wait for this node to apply the write itself: every
// MUPDATE read runs a linearizable read first (FIND through Find, LIST,
// UPDATE's dump and NOOP through Sync), so the wait would only add raft's
// commit-notification delay to writes through a follower.
func (d directory) Apply(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	res, err := d.node.ApplyCommitted(ctx, cmds)
	return res, temporary(err)
}

func (d directory) Sync(ctx context.Context) error { return temporary(d.node.LinearizableRead(ctx)) }

func (d directory) Store() *fsm.Store { return d.node.Store() }

// Find serves FIND: through a follower the leader answers, which spares
// the wait for this node to learn the commit of a write just made.
func (d directory) Find(ctx context.Context, name string) (fsm.Entry, bool, error) {
	e, found, err := d.node.LinearizableGet(ctx, name)
	return e, found, temporary(err)
}

func temporary(err error) error {
	if err != nil && (errors.Is(err, cluster.ErrUnavailable) || errors.Is(err, cluster.ErrShutdown)) {
		return fmt.Errorf("%w: %w", mupdatecompat.ErrTemporary, err)
	}
	return err
}

func newMupdateServer(cfg Config, node *cluster.Node, authn *auth.Authenticator, logger *slog.Logger,
	observe func(command, result string, d time.Duration)) (*mupdatecompat.Server, error) {
	mc := mupdatecompat.DefaultConfig()
	mc.ObserveCommand = observe
	if cfg.Mupdate.Servername != "" {
		mc.ServerName = cfg.Mupdate.Servername
	}
	mc.Version = bannerVersion
	if cfg.Mupdate.MaxConnections > 0 {
		mc.MaxConnections = cfg.Mupdate.MaxConnections
	}
	mc.IdleTimeout = cfg.Mupdate.IdleTimeout.Std()
	mc.BarrierTimeout = cfg.Mupdate.NoopTimeout.Std()
	if cfg.Mupdate.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Mupdate.TLSCert, cfg.Mupdate.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("mupdate.tls_cert/mupdate.tls_key: %w", err)
		}
		mc.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	applyLoginProtection(cfg.Mupdate, &mc)
	mc.Profiles = map[string]mupdatecompat.Profile{}
	for _, id := range cfg.Mupdate.QuotedOutput {
		p := mc.Profiles[id]
		p.QuoteStrings = true
		mc.Profiles[id] = p
	}
	for _, id := range cfg.Mupdate.BytewiseOrder {
		p := mc.Profiles[id]
		p.Order = mupdatecompat.OrderBytewise
		mc.Profiles[id] = p
	}
	ms, err := mupdatecompat.NewServer(mc, directory{node}, authn, logger.With("component", "mupdate"))
	if err != nil {
		return nil, fmt.Errorf("mupdate: %w", err)
	}
	return ms, nil
}

func serveMupdate(ms *mupdatecompat.Server, lns *listeners, logger *slog.Logger) {
	run := func(name string, ln net.Listener, f func(net.Listener) error) {
		if ln == nil {
			return
		}
		go func() {
			if err := f(ln); err != nil && !errors.Is(err, mupdatecompat.ErrServerClosed) {
				logger.Error("mupdate listener stopped", "listener", name, "err", err)
			}
		}()
	}
	run("mupdate.listen", lns.mupdate, ms.Serve)
	run("mupdate.listen_tls", lns.mupdateTLS, ms.ServeTLS)
}

// bannerVersion is reported in the MUPDATE banner.
const bannerVersion = "rookery-0.1"
