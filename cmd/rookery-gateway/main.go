// Command rookery-gateway is the IMAP/POP3/LMTP front door of a Rookery
// (or plain Cyrus) murder: it routes each login and each recipient to the
// backend holding the mailbox, from an in-memory replica of the directory.
//
//	rookery-gateway -config gateway.toml
//	rookery-gateway -gateway.listen.imap=127.0.0.1:1143 -gateway.directory.static_file=dir.txt ...
//
// Every setting lives under [gateway] in the file and can be overridden by
// a flag named after its TOML path (see gateway.Config). Directory feeds
// (choose one):
//
//   - gateway.directory.endpoints: follow a Rookery cluster's gRPC Watch
//     stream (production).
//   - gateway.directory.mupdate: follow a MUPDATE server's UPDATE stream,
//     e.g. an unmodified Cyrus mupdate master.
//   - gateway.directory.static_file: a fixed directory, FOR MANUAL TESTING
//     ONLY (it never changes while the gateway runs).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/gateway"
	"github.com/rookery/rookery/gateway/mupdatefeed"
	"github.com/rookery/rookery/gateway/watchfeed"
	"github.com/rookery/rookery/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stderr))
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	if version.Requested(args) {
		fmt.Fprintln(os.Stdout, version.String("rookery-gateway"))
		return 0
	}
	cfg, err := gateway.LoadConfig("rookery-gateway", args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "rookery-gateway:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cfg.Logger = log

	rep := gateway.NewReplica(cfg.ReplicaConfig())
	if err := startDirectory(ctx, cfg.Dir, rep, log); err != nil {
		log.Error("directory", "err", err)
		return 1
	}
	srv, err := gateway.New(cfg, rep)
	if err != nil {
		log.Error("configuration", "err", err)
		return 2
	}
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			log.Error("metrics.listen", "addr", cfg.Metrics.Listen, "err", err)
			return 1
		}
		serveMetrics(ctx, ln, srv, rep, log)
	}
	if err := srv.ListenAndServe(ctx); err != nil {
		log.Error("serving", "err", err)
		srv.Close()
		return 1
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return 0
}

// startDirectory fills the replica from the configured source.
func startDirectory(ctx context.Context, d gateway.DirectoryConfig, rep *gateway.Replica, log *slog.Logger) error {
	switch {
	case len(d.Endpoints) > 0:
		ccfg := client.DefaultConfig()
		ccfg.Token, ccfg.Logger = d.Token, log
		if d.CAFile != "" {
			pem, err := os.ReadFile(d.CAFile)
			if err != nil {
				return err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("directory.ca_file %s holds no certificate", d.CAFile)
			}
			ccfg.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		c, err := client.Dial(d.Endpoints, ccfg)
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			watchfeed.Run(ctx, c, rep, watchfeed.Config{StaleAfter: d.StaleAfter.Std(), Logger: log})
		}()
		log.Info("following the Rookery directory", "endpoints", d.Endpoints)
	case d.StaticFile != "":
		f, err := os.Open(d.StaticFile)
		if err != nil {
			return err
		}
		defer f.Close()
		entries, err := gateway.ParseStaticDirectory(f)
		if err != nil {
			return err
		}
		rep.Reset(entries, 1)
		rep.SetReady(true)
		log.Warn("STATIC DIRECTORY loaded: for manual testing only, it will never change", "file", d.StaticFile, "entries", len(entries))
	case d.Mupdate != "":
		cfg := mupdatefeed.DefaultConfig()
		cfg.Addr, cfg.User, cfg.Password, cfg.Logger = d.Mupdate, d.MupdateUser, d.MupdatePassword, log
		go mupdatefeed.New(cfg, rep).Run(ctx)
		log.Info("following a MUPDATE server", "addr", d.Mupdate)
	default:
		log.Warn("no directory configured (directory.endpoints): the replica stays empty and not ready; logins and deliveries get temporary failures")
	}
	return nil
}
