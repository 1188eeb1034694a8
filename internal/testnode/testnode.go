// Package testnode is what the two in-process test clusters share, cluster's
// own tests and api/apitest, without importing cluster (cluster's
// in-package tests could not import it back).
package testnode

import (
	"log/slog"
	"os"
	"sync"
	"testing"
)

// Logger logs warnings and errors to the test log (everything with
// ROOKERY_TEST_DEBUG=1) until the test ends: nodes' goroutines may still
// log after it, when t.Log would panic.
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	level := slog.LevelWarn
	if os.Getenv("ROOKERY_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Logf("%s", p)
	}
	return len(p), nil
}
