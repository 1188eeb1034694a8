package mupdatecompat

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
)

// lateFollower is a directory whose local store lags behind (it is never
// written) while Find answers from the up-to-date store, as a raft
// follower asking its leader does.
type lateFollower struct {
	*directory.Local // the leader's state
	behind           *fsm.Store
	down             atomic.Bool
}

func (d *lateFollower) Store() *fsm.Store { return d.behind }

func (d *lateFollower) LinearizableGet(ctx context.Context, name string) (fsm.Entry, bool, error) {
	if d.down.Load() {
		return fsm.Entry{}, false, fmt.Errorf("%w: no leader", directory.ErrUnavailable)
	}
	e, ok := d.Local.Store().Get(name)
	return e, ok, ctx.Err()
}

func TestFindAsksTheDirectoryFinderNotTheLocalStore(t *testing.T) {
	dir := &lateFollower{Local: directory.NewLocal(fsm.New(fsm.DefaultConfig())), behind: fsm.New(fsm.DefaultConfig())}
	env := newEnvDir(t, dir, nil)
	env.apply(fsm.Command{Op: fsm.OpActivate, Name: "user.alice", Location: "be1!p", ACL: "alice\tlrs\t"})
	be := env.dial()
	be.login("mupdate")

	be.send("F1 FIND \"user.alice\"\r\n")
	if r := be.resp(); r.Tag != "F1" || r.Name != "MAILBOX" || r.Args[0].Value != "user.alice" || r.Args[1].Value != "be1!p" {
		t.Fatalf("FIND answered %+v, want the MAILBOX line from the Finder", r)
	}
	be.expect(`F1 OK "Search completed"`)

	be.send("F2 FIND \"user.nobody\"\r\n")
	be.expect(`F2 OK "Search completed"`)

	dir.down.Store(true)
	be.send("F3 FIND \"user.alice\"\r\n")
	be.expect(`F3 NO "directory temporarily unavailable, try again"`)
}
