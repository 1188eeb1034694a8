package mupdatecompat

import (
	"net"
	"strings"
	"testing"
	"time"
)

// badLogin20 is a 20-byte PLAIN response with a wrong password, CRLF.
var badLogin20 = b64("\x00mupdate\x00wrongx") + "\r\n"

// halfOpen connects and starts a login it never finishes, as the flood of
// issue 10 did: `A1 AUTHENTICATE "PLAIN" {20+}` and nothing more.
func (e *testEnv) halfOpen() *client {
	e.t.Helper()
	c := e.dial()
	c.send("A1 AUTHENTICATE \"PLAIN\" {20+}\r\n")
	return c
}

func TestUnauthenticatedConnectionIsClosedAfterPreAuthTimeout(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.PreAuthTimeout = 300 * time.Millisecond })
	half := env.halfOpen()
	// A client that keeps sending commands without logging in is closed
	// all the same: the deadline runs from the accept.
	chatty := env.dial()
	authed := env.dial()
	authed.login("mupdate")
	start := time.Now()
	for i := 0; time.Since(start) < 200*time.Millisecond; i++ {
		chatty.send("F1 FIND \"x\"\r\n")
		chatty.expect(`F1 BAD "Please login first"`)
		time.Sleep(20 * time.Millisecond)
	}
	half.expect(`* BYE "Login timeout"`)
	half.eof()
	chatty.expect(`* BYE "Login timeout"`)
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("closed after %v", waited)
	}
	authed.send("N1 NOOP\r\n")
	authed.expect(`N1 OK "Noop done"`)
	if r := env.srv.Refusals(); r.PreAuthTimeouts != 2 {
		t.Errorf("refusals %+v, want 2 pre-auth timeouts", r)
	}
	if !strings.Contains(env.logs.String(), "no login in time") {
		t.Error("pre-auth timeout not logged")
	}
}

func TestHalfOpenConnectionsPerSourceAreCapped(t *testing.T) {
	const perSource = 4
	env := newEnv(t, func(c *Config) { c.MaxPreAuthPerSource = perSource; c.PreAuthGrace = 0 })
	var half []*client
	for range perSource {
		half = append(half, env.halfOpen())
	}
	// One more from the same address replaces the oldest.
	legit := env.dial()
	half[0].expect(`* BYE "Too many unauthenticated connections from your address"`)
	half[0].eof()
	legit.login("mupdate")
	// Logged-in connections do not count: the address may open another
	// unauthenticated one without replacing anybody else.
	extra := env.halfOpen()
	for _, c := range append(half[1:], extra) {
		c.send(badLogin20) // the promised 20 bytes, a bad login
		c.expect(`A1 NO "authentication failure"`)
	}
	if r := env.srv.Refusals(); r.EvictedPerSource != 1 || r.AuthFailures != perSource {
		t.Errorf("refusals %+v", r)
	}
	if !strings.Contains(env.logs.String(), "remote=127.0.0.1:") {
		t.Error("refusal logged without the source address")
	}
}

func TestFullServerReplacesTheOldestUnauthenticatedConnection(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.MaxConnections = 3; c.MaxPreAuthPerSource = 0; c.PreAuthGrace = 0 })
	backend := env.dial()
	backend.login("mupdate")
	old := env.halfOpen()
	newer := env.halfOpen()
	legit := env.dial() // replaces old: the server holds authenticated ones first
	old.expect(`* BYE "Server Unable"`)
	old.eof()
	legit.login("be1")
	waitFor(t, "the replaced connection to close", func() bool { return env.srv.Connections() == 3 })
	newer.send(badLogin20)
	newer.expect(`A1 NO "authentication failure"`)
	newer.login("fe")
	// Now every connection is logged in: a new one is refused.
	nc, err := net.Dial("tcp", env.addr)
	if err != nil {
		t.Fatal(err)
	}
	over := newClient(t, nc)
	over.expect(`* BYE "Server Unable"`)
	if r := env.srv.Refusals(); r.EvictedServerFull != 1 || r.ServerFull != 1 {
		t.Errorf("refusals %+v", r)
	}
	backend.send("N1 NOOP\r\n")
	backend.expect(`N1 OK "Noop done"`)
}

// TestNewConnectionsAreNotReplacedWithinTheGrace: a connection that has
// just arrived, or whose password is being checked, is not replaced; the
// newcomer is refused instead, and the young ones log in.
func TestNewConnectionsAreNotReplacedWithinTheGrace(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.MaxPreAuthPerSource = 2; c.PreAuthGrace = time.Hour })
	a, b := env.dial(), env.dial()
	nc, err := net.Dial("tcp", env.addr)
	if err != nil {
		t.Fatal(err)
	}
	over := newClient(t, nc)
	over.expect(`* BYE "Too many unauthenticated connections from your address"`)
	over.eof()
	a.login("mupdate")
	b.login("be1")
	if r := env.srv.Refusals(); r.SourceFull != 1 || r.EvictedPerSource != 0 {
		t.Errorf("refusals %+v", r)
	}
}
