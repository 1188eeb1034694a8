package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/internal/httpserve"
	"github.com/rookery/rookery/internal/metrics"
	"github.com/rookery/rookery/mupdatecompat"
)

// serveDebug serves Prometheus metrics, profiling and a JSON status page on
// ln until ctx ends. It is off unless debug.listen is set: pprof exposes
// internals.
func serveDebug(ctx context.Context, ln net.Listener, node *cluster.Node, ms *mupdatecompat.Server, reg *prometheus.Registry, logger *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler(reg))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/vars", func(w http.ResponseWriter, r *http.Request) {
		st := node.Status()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"status":              st,
			"mupdate_connections": ms.Connections(),
			"mailboxes":           node.Store().Stats(),
		})
	})
	httpserve.Serve(ctx, ln, mux, "debug", logger)
}
