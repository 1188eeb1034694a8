package main

import (
	"slices"
	"time"
)

// sample collects the outcome of one benchmark phase: latencies of every
// successful operation, and the errors.
type sample struct {
	lat      []time.Duration
	errors   int
	firstErr error
	// window is the measuring window and inWindow the operations that
	// completed inside it; operations still running when it closes count
	// for latency but not for throughput, so slow stragglers cannot
	// stretch the denominator.
	window   time.Duration
	inWindow int
	// elapsed is the wall time until every operation had finished.
	elapsed time.Duration
}

func (s *sample) ok(d time.Duration) { s.lat = append(s.lat, d) }

func (s *sample) fail(err error) {
	s.errors++
	if s.firstErr == nil {
		s.firstErr = err
	}
}

// merge folds per-worker samples into one (workers keep their own to avoid
// locking on the hot path).
func merge(parts []*sample, elapsed time.Duration) *sample {
	out := &sample{elapsed: elapsed}
	for _, p := range parts {
		out.lat = append(out.lat, p.lat...)
		out.inWindow += p.inWindow
		out.window = max(out.window, p.window)
		out.errors += p.errors
		if out.firstErr == nil {
			out.firstErr = p.firstErr
		}
	}
	slices.Sort(out.lat)
	return out
}

// rate is successful operations per second: inside the window when there
// is one, else over the whole elapsed time.
func (s *sample) rate() float64 {
	if s.window > 0 {
		return float64(s.inWindow) / s.window.Seconds()
	}
	if s.elapsed <= 0 {
		return 0
	}
	return float64(len(s.lat)) / s.elapsed.Seconds()
}

// percentile returns the q-quantile (0..1) of the sorted latencies, nearest
// rank; 0 when there are none.
func (s *sample) percentile(q float64) time.Duration {
	n := len(s.lat)
	if n == 0 {
		return 0
	}
	i := int(q*float64(n)+0.5) - 1
	i = max(0, min(n-1, i))
	return s.lat[i]
}
