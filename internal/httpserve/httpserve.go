// Package httpserve runs the small operator HTTP listeners of the Rookery
// binaries (debug, metrics, readiness) with one lifecycle: serve until the
// context ends, then shut down with a short grace.
package httpserve

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// shutdownGrace bounds how long in-flight requests may finish at shutdown.
const shutdownGrace = 2 * time.Second

// Serve serves h on ln in the background until ctx ends. A listener that
// fails is logged under name; it is an operator aid and never stops the
// process.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, name string, log *slog.Logger) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(name+" listener stopped", "err", err)
		}
	}()
}
