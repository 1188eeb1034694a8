package main

import (
	"context"
	"log/slog"
)

// shutdownQuiet demotes to debug, once ctx is done (the node is shutting
// down), the errors raft's network transport logs for every peer
// connection that drops ("failed to decode incoming command": connection
// reset, EOF, transport shutdown). When the whole cluster is stopped, each
// node sees its peers hang up; that is the shutdown working, not an error.
// While the node runs the same line stays an error: a peer vanished.
type shutdownQuiet struct {
	slog.Handler
	ctx context.Context
}

func quietOnShutdown(ctx context.Context, l *slog.Logger) *slog.Logger {
	return slog.New(shutdownQuiet{Handler: l.Handler(), ctx: ctx})
}

// peerHangupMsg is what raft's NetworkTransport logs when reading a
// command from a peer connection fails.
const peerHangupMsg = "failed to decode incoming command"

func (h shutdownQuiet) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelError && r.Message == peerHangupMsg && h.ctx.Err() != nil {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h shutdownQuiet) WithAttrs(attrs []slog.Attr) slog.Handler {
	return shutdownQuiet{Handler: h.Handler.WithAttrs(attrs), ctx: h.ctx}
}

func (h shutdownQuiet) WithGroup(name string) slog.Handler {
	return shutdownQuiet{Handler: h.Handler.WithGroup(name), ctx: h.ctx}
}
