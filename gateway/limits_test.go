package gateway

import (
	"fmt"
	"testing"
	"time"
)

func TestLoginLimiterBlocksPerIPWithinTheWindow(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLoginLimiter(3, time.Minute, 100, func() time.Time { return now })
	for i := 0; i < 3; i++ {
		if l.Blocked("10.0.0.1") {
			t.Fatalf("blocked after %d failures", i)
		}
		l.Fail("10.0.0.1")
	}
	if !l.Blocked("10.0.0.1") || l.Blocked("10.0.0.2") {
		t.Fatal("the limit must apply to the failing IP only")
	}
	now = now.Add(time.Minute)
	if l.Blocked("10.0.0.1") {
		t.Fatal("still blocked after the window")
	}
}

func TestLoginLimiterStaysBounded(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLoginLimiter(1, time.Hour, 10, func() time.Time { return now })
	for i := 0; i < 1000; i++ {
		l.Fail(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if n := len(l.ips); n > 10 {
		t.Fatalf("tracking %d IPs, limit 10", n)
	}
	if !l.Blocked("10.0.3.231") { // the most recent one is always kept
		t.Fatal("latest failure forgotten")
	}
}

func TestConnLimiter(t *testing.T) {
	c := newConnLimiter(3, 2)
	for i, want := range []bool{true, true, false} {
		if got := c.Acquire("a"); got != want {
			t.Fatalf("Acquire(a) #%d = %v, want %v (per-IP limit 2)", i+1, got, want)
		}
	}
	if !c.Acquire("b") {
		t.Fatal("b refused below the total limit")
	}
	if c.Acquire("c") {
		t.Fatal("total limit of 3 not applied")
	}
	c.Release("a")
	if !c.Acquire("c") {
		t.Fatal("released slot not reusable")
	}
}
