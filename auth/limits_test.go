package auth

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// limitedAuth returns an Authenticator with a fake clock and small limits.
func limitedAuth(t *testing.T) (*Authenticator, *time.Time) {
	cfg := testConfig()
	cfg.Limits = LimitsConfig{
		IdentityFailures: 3, IdentityWindow: time.Minute,
		SourceFailures: 5, SourceWindow: time.Minute,
		MinBackoff: 2 * time.Second, MaxBackoff: 8 * time.Second,
		MaxPendingPerSource: 2,
	}
	a := New(cfg, testUsers(t))
	now := time.Unix(1_000_000, 0)
	a.now = func() time.Time { return now }
	return a, &now
}

func from(src string) context.Context { return WithSource(context.Background(), src+":1234") }

func TestFailedLoginsThrottleTheIdentityWithDoublingBackoff(t *testing.T) {
	a, now := limitedAuth(t)
	// be1's password verified once: the cache keeps it working throughout.
	if _, err := a.Authenticate(from("10.0.0.9"), "", "be1", "be1pw"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := a.Authenticate(from(fmt.Sprintf("10.0.1.%d", i)), "", "mupdate", "guess"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	for _, tc := range []struct {
		after time.Duration
		want  error
	}{
		{0, ErrThrottled},                       // right password, but mupdate is in back-off
		{1900 * time.Millisecond, ErrThrottled}, // first back-off is 2 s
		{200 * time.Millisecond, nil},           // over: checked, and it is right
	} {
		*now = now.Add(tc.after)
		if _, err := a.Authenticate(from("10.0.2.1"), "", "mupdate", "mupdatepw"); !errors.Is(err, tc.want) && (tc.want != nil || err != nil) {
			t.Fatalf("after %v: %v, want %v", tc.after, err, tc.want)
		}
	}
	// The back-off doubles when the limit trips again.
	a.cache = nil
	for i := range 3 {
		a.Authenticate(from(fmt.Sprintf("10.0.3.%d", 10+i)), "", "be1", "guess")
	}
	if _, err := a.Authenticate(from("10.0.3.2"), "", "be1", "be1pw"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("be1 after 3 failures: %v", err)
	}
	*now = now.Add(2100 * time.Millisecond)
	for i := range 3 {
		a.Authenticate(from(fmt.Sprintf("10.0.3.%d", 20+i)), "", "be1", "guess")
	}
	*now = now.Add(3 * time.Second)
	if _, err := a.Authenticate(from("10.0.3.2"), "", "be1", "be1pw"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("second back-off (4 s) over after 3 s: %v", err)
	}
	c := a.Counters()
	if c.ThrottledIdent < 3 || c.BackoffsIdentity != 3 || c.Failures < 9 {
		t.Fatalf("counters %+v", c)
	}
}

func TestCachedLoginIsNeverThrottled(t *testing.T) {
	a, _ := limitedAuth(t)
	if _, err := a.Authenticate(from("10.0.0.1"), "", "be1", "be1pw"); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		a.Authenticate(from("10.0.0.1"), "", "be1", "guess")
	}
	if _, err := a.Authenticate(from("10.0.0.1"), "", "be1", "be1pw"); err != nil {
		t.Fatalf("cached login while identity and source are in back-off: %v", err)
	}
}

func TestFailedLoginsThrottleTheSourceAddress(t *testing.T) {
	a, _ := limitedAuth(t)
	// Spraying names from one address: each name fails once, the address
	// five times.
	for i := range 5 {
		a.Authenticate(from("10.9.9.9"), "", fmt.Sprintf("ghost%d", i), "guess")
	}
	if _, err := a.Authenticate(from("10.9.9.9"), "", "mupdate", "mupdatepw"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("login from a throttled address: %v", err)
	}
	if _, err := a.Authenticate(from("10.1.1.1"), "", "mupdate", "mupdatepw"); err != nil {
		t.Fatalf("login from another address: %v", err)
	}
	if c := a.Counters(); c.ThrottledSource != 1 || c.BackoffsSource != 1 || c.Hashes != 1 {
		t.Fatalf("counters %+v (unknown users must cost no bcrypt)", c)
	}
}

func TestFairSemaphoreServesCleanIdentitiesAndOtherSourcesFirst(t *testing.T) {
	s := newFairSem(1, 0)
	ctx := context.Background()
	if err := s.acquire(ctx, "busy", true); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 16)
	wait := func(src string, clean bool, tag string) {
		go func() {
			if err := s.acquire(ctx, src, clean); err != nil {
				order <- "error " + err.Error()
				return
			}
			order <- tag
		}()
	}
	queued := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			s.mu.Lock()
			got := 0
			for _, p := range s.pending {
				got += p
			}
			s.mu.Unlock()
			if got == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d waiters, want %d", got, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i := range 4 {
		wait("attacker", false, fmt.Sprintf("attacker-guess%d", i))
		queued(i + 1)
	}
	for i := range 3 {
		wait("attacker", true, fmt.Sprintf("attacker-clean%d", i))
		queued(5 + i)
	}
	wait("backend", true, "backend")
	queued(8)
	var got []string
	for range 8 {
		s.release()
		got = append(got, <-order)
	}
	// Clean identities first, round-robin over sources: the backend is
	// served second, not after every attacker request.
	want := []string{"attacker-clean0", "backend", "attacker-clean1", "attacker-clean2",
		"attacker-guess0", "attacker-guess1", "attacker-guess2", "attacker-guess3"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("served %v\nwant   %v", got, want)
	}
}

func TestPendingChecksPerSourceAreBounded(t *testing.T) {
	a, _ := limitedAuth(t)
	free := fillHashSlots(a)
	defer free()
	ctx, cancel := context.WithTimeout(from("10.5.5.5"), 5*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	for i := range 2 {
		// Different passwords: equal ones would share one check.
		go func() { _, err := a.Authenticate(ctx, "", "mupdate", fmt.Sprint("x", i)); errs <- err }()
	}
	waitPending := time.Now().Add(5 * time.Second)
	for {
		a.sem.mu.Lock()
		n := a.sem.pending["10.5.5.5"]
		a.sem.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(waitPending) {
			t.Fatal("checks never queued")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := a.Authenticate(ctx, "", "be1", "x"); !errors.Is(err, ErrBusy) {
		t.Fatalf("third queued check from one address: %v, want ErrBusy", err)
	}
	other, cancelOther := context.WithTimeout(from("10.6.6.6"), 50*time.Millisecond)
	defer cancelOther()
	if _, err := a.Authenticate(other, "", "be1", "be1pw"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("another address queues (no slot is free): %v", err)
	}
	cancel()
	for range 2 {
		<-errs
	}
	if c := a.Counters(); c.Busy != 1 {
		t.Fatalf("counters %+v", c)
	}
}

// TestIdentityBackoffSparesAddressesItLoggedInFrom: guesses at be1 from
// elsewhere throttle be1, but not from the address be1 has logged in from,
// even once its cached login is gone.
func TestIdentityBackoffSparesAddressesItLoggedInFrom(t *testing.T) {
	a, _ := limitedAuth(t)
	a.cache = nil // every login is a real check, as after the cache expired
	if _, err := a.Authenticate(from("10.0.0.1"), "", "be1", "be1pw"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		a.Authenticate(from(fmt.Sprintf("10.7.0.%d", i)), "", "be1", "guess")
	}
	if _, err := a.Authenticate(from("10.0.0.2"), "", "be1", "be1pw"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("be1 from a new address during its back-off: %v", err)
	}
	if _, err := a.Authenticate(from("10.0.0.1"), "", "be1", "be1pw"); err != nil {
		t.Fatalf("be1 from its known address during its back-off: %v", err)
	}
}
