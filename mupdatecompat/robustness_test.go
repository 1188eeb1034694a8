package mupdatecompat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
)

// TestHostileInputGetsBadAndOthersKeepBeingServed sends each hostile input
// of issue #4 on its own connection while a slave streams and a backend
// writes on two others.
func TestHostileInputGetsBadAndOthersKeepBeingServed(t *testing.T) {
	env := newEnv(t, nil)
	slave, _ := startStream(t, env, "fe", "U01 UPDATE")
	tests := []struct {
		name   string
		login  bool
		send   string
		want   string // first reply line
		closes bool   // the server closes after it
	}{
		{"2 MiB tag", false, strings.Repeat("A", 2<<20) + " NOOP\r\n", `* BAD "Line too long"`, true},
		{"2 MiB tag after login", true, strings.Repeat("A", 2<<20) + " NOOP\r\n", `* BAD "Line too long"`, true},
		{"literal of 2 GiB", true, "A1 FIND {2147483648+}\r\nabc", `A1 BAD "Literal too large"`, true},
		{"literal of 999999999", false, "A1 AUTHENTICATE \"PLAIN\" {999999999+}\r\n", `A1 BAD "Literal too large"`, true},
		{"literal above the pre-login limit", false, "A1 AUTHENTICATE \"PLAIN\" {40000+}\r\n" + strings.Repeat("A", 40000) + "\r\n", `A1 BAD "Literal too large"`, true},
		{"sync literal too large is refused, session goes on", true, "A1 FIND {999999999}\r\n", `A1 BAD "Literal too large"`, false},
		{"NUL in quoted string", true, "A1 FIND \"a\x00b\"\r\n", `A1 BAD "Invalid quoted string"`, false},
		{"NUL in literal", true, "A1 FIND {3+}\r\na\x00b\r\n", `A1 BAD "NUL byte in literal"`, false},
		{"NUL line", false, "\x00\x00\x00\r\n", `* BAD "Invalid tag"`, false},
		{"binary garbage", false, "\xff\xfe\x80((\"\\{}\r\n", `* BAD "Invalid tag"`, false},
		{"garbage arguments", true, "A1 RESERVE ((( )))\r\n", `A1 BAD "Invalid characters in command"`, false},
		{"many arguments", true, "A1 UPDATE" + strings.Repeat(" \"h\"", 100) + "\r\n", `A1 BAD "Too many arguments"`, false},
		{"command over the size budget", true, "A1 ACTIVATE" + strings.Repeat(" {200000+}\r\n"+strings.Repeat("a", 200000), 6) + "\r\n", `A1 BAD "Command too long"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := env.dial()
			c.t = t
			if tt.login {
				c.login("mupdate")
			}
			// The server may stop reading early; write in the background.
			go func() {
				c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
				io.WriteString(c.nc, tt.send)
			}()
			c.expect(tt.want)
			if tt.closes {
				c.eof()
				return
			}
			c.send("N1 LOGOUT\r\n")
			c.expect(`N1 OK "bye-bye"`)
		})
	}
	t.Run("half-sent literal then close", func(t *testing.T) {
		c := env.dial()
		c.login("mupdate")
		c.send("A1 ACTIVATE {100+}\r\nabc")
		c.nc.Close()
	})
	t.Run("close in the middle of a SASL exchange", func(t *testing.T) {
		c := env.dial()
		c.send("A01 AUTHENTICATE \"LOGIN\"\r\n")
		c.expect(b64("Username:"))
		c.nc.Close()
	})

	// Everyone else was served all along.
	be := env.dial()
	be.login("mupdate")
	be.send("X0 RESERVE \"after\" \"be1!p\"\r\n")
	be.expect(`X0 OK "done"`)
	slave.expect("U01 RESERVE {5+}", "after {5+}", "be1!p")
	slave.send("N1 NOOP\r\n")
	slave.expect(`N1 OK "Noop done"`)
	// And nothing leaked: only the slave and the backend remain.
	waitFor(t, "hostile connections to close", func() bool { return env.srv.Connections() == 2 })
}

func TestConnectionLimitSaysServerUnable(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.MaxConnections = 2 })
	a := env.dial()
	a.login("mupdate")
	env.dial().login("fe")
	nc, err := net.Dial("tcp", env.addr)
	if err != nil {
		t.Fatal(err)
	}
	over := newClient(t, nc)
	over.expect(`* BYE "Server Unable"`)
	over.eof()
	a.send("Q1 LOGOUT\r\n")
	a.expect(`Q1 OK "bye-bye"`)
	waitFor(t, "a slot to free up", func() bool { return env.srv.Connections() == 1 })
	c := env.dial()
	c.login("mupdate")
}

func TestIdleConnectionIsClosed(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	c := env.dial()
	start := time.Now()
	c.expect(`* BYE "idle timeout"`)
	c.eof()
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the idle timeout", d)
	}
	// A stream kept alive by NOOPs outlives the timeout.
	slave, _ := startStream(t, env, "fe", "U01 UPDATE")
	for i := 0; i < 4; i++ {
		time.Sleep(150 * time.Millisecond)
		slave.send(fmt.Sprintf("N%d NOOP\r\n", i))
		slave.expect(fmt.Sprintf(`N%d OK "Noop done"`, i))
	}
}

// faultyDirectory is a LocalDirectory that can lose its quorum: writes and
// barriers then fail with ErrTemporary, barriers only after their context
// ends, as a real cluster waiting for a leader does.
type faultyDirectory struct {
	*directory.Local
	down      atomic.Bool
	permanent atomic.Bool
}

func (d *faultyDirectory) ApplyCommitted(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	if d.permanent.Load() {
		return nil, errors.New("disk on fire")
	}
	if d.down.Load() {
		return nil, fmt.Errorf("%w: no quorum", directory.ErrUnavailable)
	}
	return d.Local.Apply(ctx, cmds)
}

func (d *faultyDirectory) LinearizableRead(ctx context.Context) error {
	if d.down.Load() {
		<-ctx.Done()
		return fmt.Errorf("%w: %w", directory.ErrUnavailable, ctx.Err())
	}
	return d.Local.LinearizableRead(ctx)
}

func (d *faultyDirectory) LinearizableGet(ctx context.Context, name string) (fsm.Entry, bool, error) {
	if err := d.LinearizableRead(ctx); err != nil {
		return fsm.Entry{}, false, err
	}
	return d.Local.LinearizableGet(ctx, name)
}

func TestUnavailableDirectoryAnswersNoPromptly(t *testing.T) {
	dir := &faultyDirectory{Local: directory.NewLocal(fsm.New(fsm.DefaultConfig()))}
	env := newEnvDir(t, dir, func(c *Config) {
		c.CommandTimeout = 200 * time.Millisecond
		c.BarrierTimeout = 200 * time.Millisecond
	})
	slave, _ := startStream(t, env, "fe", "U01 UPDATE")
	be := env.dial()
	be.login("mupdate")
	dir.down.Store(true)

	for _, s := range []struct{ send, want string }{
		{`X0 RESERVE "a" "be1!p"`, `X0 NO "directory temporarily unavailable, try again"`},
		{`F1 FIND "a"`, `F1 NO "directory temporarily unavailable, try again"`},
		{`L1 LIST`, `L1 NO "directory temporarily unavailable, try again"`},
		{`U1 UPDATE`, `U1 NO "directory temporarily unavailable, try again"`},
	} {
		start := time.Now()
		be.send(s.send + "\r\n")
		be.expect(s.want)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s answered after %v", s.send, d)
		}
	}
	// The stream's barrier cannot be proven: the slave is told to go.
	start := time.Now()
	slave.send("N1 NOOP\r\n")
	slave.expect(`* BYE "directory unavailable, reconnect"`)
	slave.eof()
	t.Logf("stream closed %v after an unprovable NOOP (bound 200ms)", time.Since(start))

	dir.down.Store(false)
	dir.permanent.Store(true)
	be.send("X1 RESERVE \"a\" \"be1!p\"\r\n")
	be.expect(`X1 NO "directory error"`)
	dir.permanent.Store(false)
	be.send("X2 RESERVE \"a\" \"be1!p\"\r\n")
	be.expect(`X2 OK "done"`)
}

// TestSlowSlaveDoesNotBlockOthers: a slave that stops reading must not
// delay another slave's stream, and is dropped after WriteTimeout.
func TestSlowSlaveDoesNotBlockOthers(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.WriteTimeout = 500 * time.Millisecond })
	stuck, _ := startStream(t, env, "fe", "U01 UPDATE")
	_ = stuck // never reads again
	fast, _ := startStream(t, env, "fe", "U01 UPDATE")
	acl := strings.Repeat("user\tlrswipkxtecdan\t", 3000) // 60 KB per change
	const n = 200                                         // 12 MB: far more than socket buffers hold
	done := make(chan time.Duration)
	go func() {
		start := time.Now()
		for i := 0; i < n; i++ {
			r := fast.resp()
			if r.Name != "MAILBOX" || r.Args[2].Value != acl {
				t.Errorf("fast slave got %s", respLine(r))
				break
			}
		}
		done <- time.Since(start)
	}()
	for i := 0; i < n; i++ {
		env.apply(fsm.Command{Op: fsm.OpActivate, Name: fmt.Sprintf("big%03d", i), Location: "be1!p", ACL: acl})
	}
	t.Logf("fast slave received %d changes (%d MB) in %v while the other slave was stuck", n, n*len(acl)>>20, <-done)
	waitFor(t, "the stuck slave to be dropped", func() bool { return env.srv.Connections() == 1 })
	if !strings.Contains(env.logs.String(), "mupdate") {
		t.Error("nothing logged")
	}
}

func TestShutdownSaysByeToEveryone(t *testing.T) {
	env := newEnv(t, nil)
	idle := env.dial()
	authed := env.dial()
	authed.login("mupdate")
	slave, _ := startStream(t, env, "fe", "U01 UPDATE")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{idle, authed, slave} {
		c.expect(`* BYE "Server shutting down"`)
		c.eof()
	}
	if _, err := net.DialTimeout("tcp", env.addr, time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

func TestLogoutInEveryState(t *testing.T) {
	env := newEnv(t, nil)
	pre := env.dial()
	pre.send("Q1 LOGOUT\r\n")
	pre.expect(`Q1 OK "bye-bye"`)
	pre.eof()
	slave, _ := startStream(t, env, "fe", "U01 UPDATE")
	slave.send("Q1 LOGOUT\r\n")
	slave.expect(`Q1 OK "bye-bye"`)
	slave.eof()
}
