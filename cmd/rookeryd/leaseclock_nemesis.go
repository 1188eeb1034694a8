//go:build clocknemesis

package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rookery/rookery/cluster"
)

// LeaseClockRateFile, in the data dir of a node built with -tags
// clocknemesis, holds the rate its lease clock runs at (1 is real time);
// Jepsen's clock nemesis writes it. The node creates it, so the harness
// can tell a binary built with the tag from one without.
const LeaseClockRateFile = "lease-clock-rate"

// rateClockPoll is how often the rate file is read.
const rateClockPoll = 10 * time.Millisecond

// leaseClock is a monotonic clock running at the rate in the data dir's
// rate file: a clock nemesis for the read lease, never for production.
func leaseClock(dataDir string, logger *slog.Logger) (cluster.LeaseClock, error) {
	path := filepath.Join(dataDir, LeaseClockRateFile)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return nil, fmt.Errorf("clock nemesis: %w", err)
	}
	c := newRateClock()
	logger.Warn("lease clock runs at the rate in its file (built with -tags clocknemesis: for fault injection only)", "file", path)
	go func() {
		for range time.Tick(rateClockPoll) {
			if b, err := os.ReadFile(path); err == nil {
				if r, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64); err == nil && r > 0 {
					c.setRate(r)
				}
			}
		}
	}()
	return c, nil
}

// rateClock advances rate times as fast as Go's monotonic clock.
type rateClock struct {
	mu    sync.Mutex
	base  time.Time // the reading when the rate last changed
	since time.Time // the real time it changed
	rate  float64
}

func newRateClock() *rateClock {
	now := time.Now()
	return &rateClock{base: now, since: now, rate: 1}
}

func (c *rateClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at(time.Now())
}

// at is the reading at real time now. Call with mu held.
func (c *rateClock) at(now time.Time) time.Time {
	return c.base.Add(time.Duration(float64(now.Sub(c.since)) * c.rate))
}

func (c *rateClock) setRate(r float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r == c.rate {
		return
	}
	now := time.Now()
	c.base, c.since, c.rate = c.at(now), now, r
}
