//go:build clocknemesis

package main

import (
	"testing"
	"time"
)

func TestRateClockRunsAtItsRateAndNeverGoesBack(t *testing.T) {
	for _, rate := range []float64{0.3, 0.9, 1, 1.1, 3} {
		c := newRateClock()
		c.setRate(rate)
		from := c.at(c.since)
		got := c.at(c.since.Add(time.Second)).Sub(from)
		if want := time.Duration(rate * float64(time.Second)); got != want {
			t.Errorf("rate %v: a real second reads as %v, want %v", rate, got, want)
		}
		before := c.Now()
		c.setRate(1 / rate)
		if after := c.Now(); after.Before(before) {
			t.Errorf("rate %v: the clock went back across a rate change: %v then %v", rate, before, after)
		}
	}
}
