package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"

	"github.com/rookery/rookery/gateway"
	"github.com/rookery/rookery/internal/httpserve"
)

// serveMetrics serves the gateway's counters and readiness until ctx ends.
// /readyz answers 503 until the replica has caught up, so a load balancer
// sends no client to a gateway that would only answer temporary failures.
func serveMetrics(ctx context.Context, ln net.Listener, srv *gateway.Server, rep *gateway.Replica, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(srv.Metrics())
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !rep.Ready() {
			http.Error(w, "directory replica not caught up", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	httpserve.Serve(ctx, ln, mux, "metrics", log)
}
