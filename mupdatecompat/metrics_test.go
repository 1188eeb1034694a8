package mupdatecompat

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

// commandLog records ObserveCommand calls.
type commandLog struct {
	mu   sync.Mutex
	seen []string // "COMMAND result"
}

func (l *commandLog) observe(command, result string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d <= 0 {
		result += " (no duration)"
	}
	l.seen = append(l.seen, command+" "+result)
}

func (l *commandLog) has(want string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.seen {
		if s == want {
			return true
		}
	}
	return false
}

func TestObserveCommandReportsNameResultAndDuration(t *testing.T) {
	log := &commandLog{}
	env := newEnv(t, func(c *Config) { c.ObserveCommand = log.observe })
	c := env.dial()
	bad := plainIR("mupdate", "wrong")
	c.send("A01 AUTHENTICATE \"PLAIN\" {" + strconv.Itoa(len(bad)) + "+}\r\n" + bad + "\r\n")
	c.line()
	c.login("mupdate")
	c.send("R01 RESERVE " + lit("user.alice", "be1!default") + "\r\n")
	c.expect(`R01 OK "done"`)
	c.send("D01 DELETE " + lit("user.nobody") + "\r\n")
	c.expect(`D01 NO "mailbox doesn't exist"`)
	c.send("X01 FROBNICATE\r\n")
	c.line()
	c.send("N01 NOOP\r\n")
	c.expect(`N01 OK "Noop done"`)
	for _, want := range []string{
		"AUTHENTICATE no", "AUTHENTICATE ok", "RESERVE ok", "DELETE no", "UNKNOWN bad", "NOOP ok",
	} {
		if !log.has(want) {
			t.Errorf("no %q observed; saw %q", want, log.seen)
		}
	}
}

func TestStreamsAndFullDumpsAreCounted(t *testing.T) {
	env := newEnv(t, nil)
	full, _ := startStream(t, env, "fe", "U01 UPDATE")
	startStream(t, env, "fe", `U01 UPDATE "be1"`)
	waitFor(t, "two streams", func() bool { return env.srv.Streams() == 2 })
	if got := env.srv.FullDumps(); got != 1 {
		t.Fatalf("full dumps %d, want 1 (the UPDATE with a host list is partial)", got)
	}
	full.send("L01 LOGOUT\r\n")
	waitFor(t, "one stream after a logout", func() bool { return env.srv.Streams() == 1 })
}
