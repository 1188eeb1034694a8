package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/rookery/rookery/auth"
	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/mupdatecompat"
)

func newMupdateServer(cfg Config, dir *directory.Service, authn *auth.Authenticator, logger *slog.Logger,
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
	ms, err := mupdatecompat.NewServer(mc, dir, authn, logger.With("component", "mupdate"))
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
