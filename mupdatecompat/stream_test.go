package mupdatecompat

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
	wire "github.com/rookery/rookery/internal/imapwire"
)

// respLine renders a response compactly for comparisons.
func respLine(r *wire.Command) string {
	parts := []string{r.Tag, r.Name}
	for _, a := range r.Args {
		parts = append(parts, a.Value)
	}
	return strings.Join(parts, " ")
}

// readUntil reads responses until one with the given tag and name.
func (c *client) readUntil(tag, name string) []string {
	c.t.Helper()
	var got []string
	for {
		r := c.resp()
		got = append(got, respLine(r))
		if r.Tag == tag && r.Name == name {
			return got
		}
	}
}

func startStream(t *testing.T, env *testEnv, user, update string) (*client, []string) {
	t.Helper()
	c := env.dial()
	c.login(user)
	c.send(update + "\r\n")
	return c, c.readUntil("U01", "OK")
}

func TestUpdateStreamsEveryChangeAsApplied(t *testing.T) {
	env := newEnv(t, nil)
	env.apply(
		fsm.Command{Op: fsm.OpActivate, Name: "user.bob", Location: "be2!default", ACL: "bob\tlrs\t"},
		fsm.Command{Op: fsm.OpReserve, Name: "user.alice", Location: "be1!default"},
	)
	slave, dump := startStream(t, env, "fe", "U01 UPDATE")
	wantDump := []string{
		"U01 RESERVE user.alice be1!default",
		"U01 MAILBOX user.bob be2!default bob\tlrs\t",
		"U01 OK streaming starts",
	}
	if !reflect.DeepEqual(dump, wantDump) {
		t.Fatalf("dump %q, want %q", dump, wantDump)
	}

	be := env.dial()
	be.login("mupdate")
	be.send("X0 ACTIVATE \"user.alice\" \"be1!default\" \"alice\tall\t\"\r\n")
	be.expect(`X0 OK "done"`)
	// No NOOP: the change must arrive on its own, right away.
	start := time.Now()
	if got := respLine(slave.resp()); got != "U01 MAILBOX user.alice be1!default alice\tall\t" {
		t.Fatalf("streamed %q", got)
	}
	t.Logf("change streamed %v after the backend's OK", time.Since(start))
	be.send("X1 DELETE \"user.bob\"\r\n")
	be.expect(`X1 OK "done"`)
	slave.expect("U01 DELETE {8+}", "user.bob")
	slave.send("N1 NOOP\r\n")
	slave.expect(`N1 OK "Noop done"`)
}

// laggingDirectory is a real directory whose local store applies committed
// writes only when a barrier asks for them, like a follower whose apply
// lags the leader's commit. Apply returns once the write is committed
// (queued), not applied locally.
type laggingDirectory struct {
	mu sync.Mutex
	*directory.Local
	pending [][]fsm.Command
}

func (d *laggingDirectory) ApplyCommitted(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	return d.Apply(ctx, cmds)
}

func (d *laggingDirectory) Apply(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending = append(d.pending, cmds)
	res := make([]fsm.Result, len(cmds)) // committed: OK, applied later
	return res, nil
}

func (d *laggingDirectory) LinearizableRead(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, cmds := range d.pending {
		if _, err := d.Local.Apply(ctx, cmds); err != nil {
			return err
		}
	}
	d.pending = nil
	return nil
}

// TestNoopBarrierFlushesEveryCommittedWrite proves docs/mupdate.md §8:
// writes committed before a NOOP but not yet applied on the serving node
// appear on the stream before the NOOP's OK.
func TestNoopBarrierFlushesEveryCommittedWrite(t *testing.T) {
	dir := &laggingDirectory{Local: directory.NewLocal(fsm.New(fsm.DefaultConfig()))}
	env := newEnvDir(t, dir, nil)
	slave, _ := startStream(t, env, "fe", "U01 UPDATE")
	for i := 0; i < 50; i++ {
		env.apply(fsm.Command{Op: fsm.OpActivate, Name: fmt.Sprintf("user.u%02d", i), Location: "be1!default"})
	}
	if dir.Store().Revision() != 0 {
		t.Fatal("the lagging directory applied before the barrier")
	}
	slave.send("N1 NOOP\r\n")
	got := slave.readUntil("N1", "OK")
	if len(got) != 51 {
		t.Fatalf("before the NOOP reply the stream had %d lines, want 50 changes: %q", len(got)-1, got)
	}
	for i := 0; i < 50; i++ {
		if want := fmt.Sprintf("U01 MAILBOX user.u%02d be1!default ", i); got[i] != want {
			t.Fatalf("line %d = %q, want %q (commit order)", i, got[i], want)
		}
	}
}

func TestPartialUpdateFiltersOnOldOrNewServer(t *testing.T) {
	env := newEnv(t, nil)
	env.apply(
		fsm.Command{Op: fsm.OpActivate, Name: "a", Location: "be1!default"},
		fsm.Command{Op: fsm.OpActivate, Name: "b", Location: "be2!default"},
		fsm.Command{Op: fsm.OpActivate, Name: "c", Location: "be3!default"},
		fsm.Command{Op: fsm.OpActivate, Name: "e", Location: "be10!default"},
	)
	slave, dump := startStream(t, env, "fe", `U01 UPDATE "be1" {3+}`+"\r\nbe3")
	if want := []string{"U01 MAILBOX a be1!default ", "U01 MAILBOX c be3!default ", "U01 OK streaming starts"}; !reflect.DeepEqual(dump, want) {
		t.Fatalf("partial dump %q, want %q", dump, want)
	}
	env.apply(fsm.Command{Op: fsm.OpActivate, Name: "b", Location: "be2!default", ACL: "x\tl\t"}) // be2 only: not sent
	env.apply(fsm.Command{Op: fsm.OpActivate, Name: "e", Location: "be10!x"})                     // be10 is not be1
	env.apply(fsm.Command{Op: fsm.OpActivate, Name: "d", Location: "be1!default"})                // new on be1
	env.apply(fsm.Command{Op: fsm.OpActivate, Name: "b", Location: "be1!default"})                // moved in from be2
	env.apply(fsm.Command{Op: fsm.OpActivate, Name: "a", Location: "be2!default"})                // moved out to be2
	env.apply(fsm.Command{Op: fsm.OpDeactivate, Name: "c", Location: "be3!default"})              // reserved on be3
	env.apply(fsm.Command{Op: fsm.OpDelete, Name: "c"})
	env.apply(fsm.Command{Op: fsm.OpDelete, Name: "e"}) // be10: not sent
	slave.send("N1 NOOP\r\n")
	got := slave.readUntil("N1", "OK")
	want := []string{
		"U01 MAILBOX d be1!default ",
		"U01 MAILBOX b be1!default ",
		"U01 MAILBOX a be2!default ",
		"U01 RESERVE c be3!default",
		"U01 DELETE c",
		"N1 OK Noop done",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("partial stream\n%q\nwant\n%q", got, want)
	}
}

func TestOrderProfiles(t *testing.T) {
	env := newEnv(t, func(c *Config) {
		c.Profiles = map[string]Profile{"fe": {Order: OrderBytewise}}
	})
	for _, n := range []string{"user.foo-bar", "user.foo.bar", "user.foo", "example.com!user.a", "user.foo+x"} {
		env.apply(fsm.Command{Op: fsm.OpReserve, Name: n, Location: "be1!p"})
	}
	dbname := []string{"example.com!user.a", "user.foo", "user.foo.bar", "user.foo+x", "user.foo-bar"}
	bytewise := []string{"example.com!user.a", "user.foo", "user.foo+x", "user.foo-bar", "user.foo.bar"}
	names := func(lines []string) []string {
		var out []string
		for _, l := range lines {
			if f := strings.Fields(l); f[1] == "RESERVE" {
				out = append(out, f[2])
			}
		}
		return out
	}
	for _, tt := range []struct {
		user string
		want []string
	}{{"mupdate", dbname}, {"fe", bytewise}} {
		c := env.dial()
		c.login(tt.user)
		c.send("L1 LIST \"be1!\"\r\n")
		if got := names(c.readUntil("L1", "OK")); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s LIST order %q, want %q", tt.user, got, tt.want)
		}
		c.send("U01 UPDATE\r\n")
		if got := names(c.readUntil("U01", "OK")); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s UPDATE order %q, want %q", tt.user, got, tt.want)
		}
	}
}

func TestQuotedOutputProfile(t *testing.T) {
	env := newEnv(t, func(c *Config) {
		c.Profiles = map[string]Profile{"fe": {QuoteStrings: true}}
	})
	env.apply(
		fsm.Command{Op: fsm.OpActivate, Name: "user.alice", Location: "be1!default", ACL: "alice\tlrs\t"},
		fsm.Command{Op: fsm.OpActivate, Name: `odd"name`, Location: "be1!default"},
	)
	c := env.dial()
	c.login("fe")
	c.send("L1 LIST\r\n")
	c.expect(
		"L1 MAILBOX {8+}", `odd"name "be1!default" ""`,
		"L1 MAILBOX \"user.alice\" \"be1!default\" \"alice\tlrs\t\"",
		`L1 OK "list complete"`)
	c.send("U01 UPDATE\r\n")
	c.readUntil("U01", "OK")
	env.apply(fsm.Command{Op: fsm.OpDelete, Name: "user.alice"})
	c.expect(`U01 DELETE "user.alice"`)
}

func TestCompactedHistoryEndsStreamWithBye(t *testing.T) {
	env := newEnvDir(t, directory.NewLocal(fsm.New(fsm.Config{HistorySize: 8})), nil)
	slave, _ := startStream(t, env, "fe", "U01 UPDATE")
	cmds := make([]fsm.Command, 100)
	for i := range cmds {
		cmds[i] = fsm.Command{Op: fsm.OpReserve, Name: fmt.Sprintf("n%03d", i), Location: "be1!p"}
	}
	env.apply(cmds...) // one entry: the streamer wakes up 100 revisions behind
	slave.expect(`* BYE "stream history compacted, resynchronize"`)
	slave.eof()
	// A new UPDATE resynchronises from a fresh view.
	_, dump := startStream(t, env, "fe", "U01 UPDATE")
	if len(dump) != 101 {
		t.Fatalf("resync dump has %d lines, want 100 entries and the OK", len(dump))
	}
}
