package directory_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
)

var writer = directory.Caller{Name: "be1", Server: "be1", Writer: true}

// failing is a Local whose proposals fail with err once down is set; it
// counts proposals.
type failing struct {
	*directory.Local
	down      atomic.Bool
	err       error
	proposals atomic.Int64
}

func (f *failing) Apply(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	f.proposals.Add(1)
	if f.down.Load() {
		return nil, f.err
	}
	return f.Local.Apply(ctx, cmds)
}

func TestWriteChecksStampsAndTypesEveryOutcome(t *testing.T) {
	store := fsm.New(fsm.DefaultConfig())
	svc := directory.NewLocalService(store)
	ctx := context.Background()
	if _, err := svc.Write(ctx, writer, fsm.Command{Op: fsm.OpActivate, Name: "user.taken", Location: "be1!p"}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		desc   string
		caller directory.Caller
		cmd    fsm.Command
		kind   directory.Kind // KindInternal: success
		cause  error
	}{
		{"writer reserves on its server", writer, fsm.Command{Op: fsm.OpReserve, Name: "user.a", Location: "be1!p"}, directory.KindInternal, nil},
		{"reader refused before proposing", directory.Caller{Name: "fe"}, fsm.Command{Op: fsm.OpReserve, Name: "user.b", Location: "be1!p"}, directory.KindPermissionDenied, directory.ErrReadOnly},
		{"binding refused on the committed entry", writer, fsm.Command{Op: fsm.OpReserve, Name: "user.c", Location: "be2!p"}, directory.KindPermissionDenied, nil},
		{"invalid name", writer, fsm.Command{Op: fsm.OpReserve, Name: "a\nb", Location: "be1!p"}, directory.KindInvalid, fsm.ErrInvalidCommand},
		{"peer records are not directory writes", writer, fsm.Command{Op: fsm.OpSetPeer, Name: "n1", Location: "127.0.0.1:1"}, directory.KindInvalid, nil},
		{"name held elsewhere", directory.Caller{Name: "admin", Writer: true}, fsm.Command{Op: fsm.OpReserve, Name: "user.taken", Location: "be2!p"}, directory.KindExists, nil},
		{"delete of a missing name", writer, fsm.Command{Op: fsm.OpDelete, Name: "user.nobody"}, directory.KindNotFound, nil},
		{"deactivate of a reserved entry", writer, fsm.Command{Op: fsm.OpDeactivate, Name: "user.a", Location: "be1!p"}, directory.KindNotActive, nil},
		{"compare-and-set lost", writer, fsm.Command{Op: fsm.OpDelete, Name: "user.a", IfRevision: 1}, directory.KindConflict, nil},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			before := store.Revision()
			res, err := svc.Write(ctx, tt.caller, tt.cmd)
			if err != nil {
				t.Fatalf("call failed: %v", err)
			}
			err = res[0].Err
			var de *directory.Error
			switch {
			case tt.kind == directory.KindInternal && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.kind == directory.KindInternal:
				e, _ := store.Get(tt.cmd.Name)
				if e.ReservedBy != tt.caller.Name || e.ReservedAt == 0 || res[0].Revision != store.Revision() {
					t.Fatalf("entry %+v, result %+v: want reserved_by %q, a time and the revision stamped", e, res[0], tt.caller.Name)
				}
			case !errors.As(err, &de) || de.Kind != tt.kind || directory.KindOf(err) != tt.kind:
				t.Fatalf("error %v (%T), want kind %d", err, err, tt.kind)
			case tt.cause != nil && !errors.Is(err, tt.cause):
				t.Fatalf("error %v does not wrap %v", err, tt.cause)
			case (tt.cause != nil) && store.Revision() != before:
				t.Fatalf("a command refused before proposing changed the store")
			}
		})
	}
}

func TestWriteValidatesOnceAndProposesOnlyValidCommands(t *testing.T) {
	r := &failing{Local: directory.NewLocal(fsm.New(fsm.DefaultConfig()))}
	svc := directory.NewService(r, r.Store())
	res, err := svc.Write(context.Background(), writer,
		fsm.Command{Op: fsm.OpReserve, Name: "user.a", Location: "be1!p"},
		fsm.Command{Op: fsm.OpReserve, Name: "", Location: "be1!p"},
		fsm.Command{Op: fsm.OpReserve, Name: "user.b", Location: "be1!p"})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[2].Err != nil || directory.KindOf(res[1].Err) != directory.KindInvalid {
		t.Fatalf("results %+v: want OK, invalid, OK", res)
	}
	if n := r.proposals.Load(); n != 1 {
		t.Fatalf("%d proposals, want the two valid commands in one", n)
	}
	if res[2].Revision != res[0].Revision+1 {
		t.Fatalf("revisions %d, %d: want consecutive", res[0].Revision, res[2].Revision)
	}
}

func TestWriteSplitsLargeBatchesAndReportsALaterEntryFailurePerCommand(t *testing.T) {
	r := &failing{Local: directory.NewLocal(fsm.New(fsm.DefaultConfig()))}
	svc := directory.NewService(r, r.Store())
	cmds := make([]fsm.Command, 5000)
	for i := range cmds {
		cmds[i] = fsm.Command{Op: fsm.OpReserve, Name: fmt.Sprintf("user.u%05d", i), Location: "be1!p"}
	}
	res, err := svc.Write(context.Background(), writer, cmds...)
	if err != nil || r.proposals.Load() != 2 {
		t.Fatalf("err %v after %d proposals, want 2 entries", err, r.proposals.Load())
	}
	for i := range res {
		if res[i].Err != nil {
			t.Fatalf("command %d: %v", i, res[i].Err)
		}
	}
	r.err = fmt.Errorf("%w: no quorum", directory.ErrUnavailable)
	r.down.Store(true)
	if _, err := svc.Write(context.Background(), writer, cmds...); directory.KindOf(err) != directory.KindUnavailable {
		t.Fatalf("first entry failing: %v, want the call to fail Unavailable", err)
	}
}

func TestReplicaErrorsAreClassified(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want directory.Kind
	}{
		{fmt.Errorf("%w: no quorum", directory.ErrUnavailable), directory.KindUnavailable},
		{fmt.Errorf("forwarding: %w", cluster.ErrUnavailable), directory.KindUnavailable},
		{cluster.ErrShutdown, directory.KindUnavailable},
		{context.DeadlineExceeded, directory.KindUnavailable},
		{errors.New("disk on fire"), directory.KindInternal},
	} {
		r := &failing{Local: directory.NewLocal(fsm.New(fsm.DefaultConfig())), err: tt.err}
		r.down.Store(true)
		svc := directory.NewService(r, r.Store())
		_, err := svc.Write(context.Background(), writer, fsm.Command{Op: fsm.OpReserve, Name: "user.a", Location: "be1!p"})
		if directory.KindOf(err) != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("%v: got %v kind %d, want kind %d wrapping the cause", tt.err, err, directory.KindOf(err), tt.want)
		}
		if !strings.Contains(err.Error(), tt.err.Error()) {
			t.Errorf("message %q loses the cause", err)
		}
	}
}

func TestWaitRevisionAnswersTheRevisionReached(t *testing.T) {
	svc := directory.NewLocalService(fsm.New(fsm.DefaultConfig()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go svc.Write(ctx, writer, fsm.Command{Op: fsm.OpReserve, Name: "user.a", Location: "be1!p"})
	if rev, err := svc.WaitRevision(ctx, 1); err != nil || rev != 1 {
		t.Fatalf("WaitRevision(1) = %d, %v", rev, err)
	}
}
