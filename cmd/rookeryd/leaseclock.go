//go:build !clocknemesis

package main

import (
	"log/slog"

	"github.com/rookery/rookery/cluster"
)

// leaseClock is the clock read leases are measured on: nil, Go's
// monotonic clock. Jepsen's build (-tags clocknemesis) replaces it with
// one whose rate its clock nemesis sets (leaseclock_nemesis.go).
func leaseClock(string, *slog.Logger) (cluster.LeaseClock, error) { return nil, nil }
