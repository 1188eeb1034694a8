package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestPeerHangupsAreErrorsUntilShutdown(t *testing.T) {
	var buf bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	l := quietOnShutdown(ctx, slog.New(slog.NewTextHandler(&buf, nil))).With("component", "cluster")
	l.Error(peerHangupMsg, "error", "read: connection reset by peer")
	l.Error("another error")
	if got := strings.Count(buf.String(), "level=ERROR"); got != 2 {
		t.Fatalf("while running: %d errors logged, want 2:\n%s", got, buf.String())
	}
	buf.Reset()
	cancel()
	l.Error(peerHangupMsg, "error", "read: connection reset by peer")
	l.Error("another error")
	if out := buf.String(); strings.Contains(out, peerHangupMsg) || !strings.Contains(out, "another error") {
		t.Fatalf("shutting down: want only the other error at info level:\n%s", out)
	}
}
