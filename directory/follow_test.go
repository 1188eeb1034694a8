package directory_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
)

var admin = directory.Caller{Name: "admin", Writer: true}

func write(t *testing.T, svc *directory.Service, cmds ...fsm.Command) {
	t.Helper()
	res, err := svc.Write(context.Background(), admin, cmds...)
	if err == nil {
		err = res[0].Err
	}
	if err != nil {
		t.Fatal(err)
	}
}

func names(evs []fsm.Event) []string {
	var out []string
	for _, ev := range evs {
		kind := "put "
		if ev.Type == fsm.EventDelete {
			kind = "delete "
		}
		out = append(out, kind+ev.Entry.Name)
	}
	return out
}

func TestFollowerFilters(t *testing.T) {
	svc := directory.NewLocalService(fsm.New(fsm.DefaultConfig()))
	write(t, svc, fsm.Command{Op: fsm.OpActivate, Name: "user.a", Location: "be1!p"})
	write(t, svc, fsm.Command{Op: fsm.OpActivate, Name: "user.b", Location: "be2!p"})
	write(t, svc, fsm.Command{Op: fsm.OpActivate, Name: "shared.c", Location: "be10!p"})
	write(t, svc, fsm.Command{Op: fsm.OpActivate, Name: "user.b", Location: "be1!p"}) // moves in to be1
	write(t, svc, fsm.Command{Op: fsm.OpActivate, Name: "user.a", Location: "be2!p"}) // moves out of be1
	write(t, svc, fsm.Command{Op: fsm.OpDelete, Name: "shared.c"})
	for _, tt := range []struct {
		desc   string
		filter directory.Filter
		want   []string
	}{
		{"everything", directory.Filter{}, []string{"put user.a", "put user.b", "put shared.c", "put user.b", "put user.a", "delete shared.c"}},
		{"name prefix", directory.Filter{NamePrefix: "user."}, []string{"put user.a", "put user.b", "put user.b", "put user.a"}},
		{"location prefix matches old or new", directory.Filter{LocationPrefix: "be1!"}, []string{"put user.a", "put user.b", "put user.a"}},
		{"servers match old or new server, exactly", directory.Filter{Servers: map[string]bool{"be1": true}}, []string{"put user.a", "put user.b", "put user.a"}},
		{"servers and name prefix together", directory.Filter{NamePrefix: "shared.", Servers: map[string]bool{"be10": true}}, []string{"put shared.c", "delete shared.c"}},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			f := svc.Follow(0, tt.filter, 2)
			var got []string
			if err := f.CatchUp(func(evs []fsm.Event) error { got = append(got, names(evs)...); return nil }); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) || f.Revision() != 6 {
				t.Fatalf("got %q at revision %d, want %q at 6", got, f.Revision(), tt.want)
			}
		})
	}
}

func TestFollowerBehindTheKeptHistoryIsCompacted(t *testing.T) {
	svc := directory.NewLocalService(fsm.New(fsm.Config{HistorySize: 4}))
	for range 10 {
		write(t, svc, fsm.Command{Op: fsm.OpReserve, Name: "user.a", Location: "be1!p"},
			fsm.Command{Op: fsm.OpDelete, Name: "user.a"})
	}
	err := svc.Follow(1, directory.Filter{}, 0).CatchUp(func([]fsm.Event) error { return nil })
	var ce *fsm.CompactedError
	if directory.KindOf(err) != directory.KindCompacted || !errors.As(err, &ce) || ce.Compact != svc.CompactRevision() {
		t.Fatalf("follow from 1: %v, want KindCompacted wrapping the compact revision %d", err, svc.CompactRevision())
	}
	if err := svc.Follow(svc.CompactRevision(), directory.Filter{}, 0).CatchUp(func([]fsm.Event) error { return nil }); err != nil {
		t.Fatalf("follow from the compact revision: %v", err)
	}
}

func TestRunDeliversLiveChangesCallsInOrderAndProgressWhenIdle(t *testing.T) {
	svc := directory.NewLocalService(fsm.New(fsm.DefaultConfig()))
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan func() error)
	got := make(chan string, 16)
	f := svc.Follow(0, directory.Filter{}, 0)
	done := make(chan error, 1)
	go func() {
		done <- f.Run(ctx, directory.Sink{
			Events:   func(evs []fsm.Event) error { got <- names(evs)[0]; return nil },
			Progress: func() error { got <- "progress"; return nil },
			Interval: 50 * time.Millisecond,
			Calls:    calls,
		})
	}()
	if g := <-got; g != "progress" {
		t.Fatalf("idle follower sent %q, want progress", g)
	}
	write(t, svc, fsm.Command{Op: fsm.OpReserve, Name: "user.a", Location: "be1!p"})
	for g := <-got; g != "put user.a"; g = <-got {
		if g != "progress" {
			t.Fatalf("got %q, want the reserve", g)
		}
	}
	calls <- func() error { got <- "call at " + string(rune('0'+f.Revision())); return nil }
	for g := <-got; g != "call at 1"; g = <-got {
		if g != "progress" {
			t.Fatalf("got %q, want the call after revision 1", g)
		}
	}
	stop := errors.New("stop")
	calls <- func() error { return stop }
	if err := <-done; err != stop {
		t.Fatalf("Run ended with %v, want the call's error", err)
	}
	cancel()
}
