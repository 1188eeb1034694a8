package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"

	"github.com/rookery/rookery/gateway"
	"github.com/rookery/rookery/internal/httpserve"
	"github.com/rookery/rookery/internal/metrics"
)

// serveMetrics serves the gateway's Prometheus metrics and readiness until
// ctx ends. /readyz answers 503 until the replica has caught up, so a load
// balancer sends no client to a gateway that would only answer temporary
// failures.
func serveMetrics(ctx context.Context, ln net.Listener, srv *gateway.Server, rep *gateway.Replica, log *slog.Logger) {
	reg := metrics.NewRegistry()
	reg.MustRegister(&gatewayCollector{gw: srv})
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler(reg))
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !rep.Ready() {
			http.Error(w, "directory replica not caught up", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	httpserve.Serve(ctx, ln, mux, "metrics", log)
}
