package migrate

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/imapwire"
	"github.com/rookery/rookery/internal/mupdateclient"
)

// Getter reads one entry of the target (client.Client.Get).
type Getter interface {
	Get(ctx context.Context, name string, stale bool) (fsm.Entry, uint64, error)
}

// Target is the Rookery side of a mirror.
type Target interface {
	Writer
	Getter
}

// MirrorConfig says where the old master is and what to do.
type MirrorConfig struct {
	Addr, User, Password string
	// Follow keeps mirroring the master's change stream after the dump
	// until ctx ends.
	Follow bool
	// ProbeInterval is how often a NOOP measures the lag (default 2s, as
	// a Cyrus slave does).
	ProbeInterval time.Duration
	// OnDump is called once the master's full dump has been received
	// (total entries), before it is written; stats reads the load's
	// progress while it is written.
	OnDump func(total int, stats func() Stats)
	// OnDumpWritten is called once the dump is in Rookery.
	OnDumpWritten func(Stats)
	// OnProgress is called after each applied group of changes and each
	// lag probe while following.
	OnProgress func(FollowStats)
	// OnFailure reports a change the directory refused while following.
	OnFailure func(Failure)
}

// FollowStats describe the mirror once the dump is written.
type FollowStats struct {
	Changes int64         // stream updates applied
	Lag     time.Duration // last measured: NOOP sent → every change before its answer applied
	Pending int           // updates received, not yet applied
}

// Mirror connects to a Cyrus mupdate master as a frontend slave does
// (UPDATE: the full dump, then the stream), writes the dump through
// loader (merge rules and conflicts included), and with cfg.Follow applies
// every streamed change, in order, until ctx ends. It returns nil when the
// dump is written (no Follow) or when ctx ends while following.
func Mirror(ctx context.Context, cfg MirrorConfig, t Target, lcfg LoaderConfig) (Stats, error) {
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = 2 * time.Second
	}
	mc, err := mupdateclient.Dial(ctx, cfg.Addr, mupdateclient.Config{User: cfg.User, Password: cfg.Password})
	if err != nil {
		return Stats{}, fmt.Errorf("connect to the mupdate master: %w", err)
	}
	defer mc.Close()
	entries, err := mc.Update(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("UPDATE from the mupdate master: %w", err)
	}
	// Read the stream from now on, while the dump is written: the master
	// must never block on a full socket.
	rctx, stopReader := context.WithCancel(ctx)
	defer stopReader()
	stream := make(chan streamItem, 1<<16)
	go readStream(rctx, mc, stream)

	l := NewLoader(ctx, t, lcfg)
	if cfg.OnDump != nil {
		cfg.OnDump(len(entries), l.Stats)
	}
	for _, e := range entries {
		if err := l.Add(e); err != nil {
			break
		}
	}
	entries = nil
	stats, err := l.Close()
	if err != nil {
		return stats, err
	}
	if cfg.OnDumpWritten != nil {
		cfg.OnDumpWritten(stats)
	}
	if !cfg.Follow {
		_ = mc.SendLogout(ctx)
		return stats, nil
	}
	f := follower{cfg: cfg, t: t, mc: mc, stream: stream}
	err = f.run(ctx)
	if ctx.Err() != nil {
		return stats, nil // stopped by the operator
	}
	return stats, err
}

type streamItem struct {
	r   imapwire.Response
	at  time.Time
	err error
}

func readStream(ctx context.Context, mc *mupdateclient.Client, out chan<- streamItem) {
	for {
		r, err := mc.Next(ctx)
		select {
		case out <- streamItem{r: r, at: time.Now(), err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

type follower struct {
	cfg     MirrorConfig
	t       Target
	mc      *mupdateclient.Client
	stream  chan streamItem
	stats   FollowStats
	probes  map[string]time.Time // NOOP tag → sent at
	pending []imapwire.Response
}

// maxGroup bounds how many consecutive stream updates go in one Batch.
const maxGroup = 1000

func (f *follower) run(ctx context.Context) error {
	f.probes = map[string]time.Time{}
	tick := time.NewTicker(f.cfg.ProbeInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			tag, err := f.mc.SendNoop(ctx)
			if err != nil {
				return fmt.Errorf("NOOP to the mupdate master: %w", err)
			}
			f.probes[tag] = time.Now()
		case it := <-f.stream:
			if err := f.handle(ctx, it); err != nil {
				return err
			}
		}
	}
}

// handle takes one stream item and whatever else is already queued behind
// it, applying updates in order.
func (f *follower) handle(ctx context.Context, it streamItem) error {
	for {
		if it.err != nil {
			return fmt.Errorf("mupdate master stream: %w", it.err)
		}
		if err := f.take(ctx, it.r); err != nil {
			return err
		}
		select {
		case it = <-f.stream:
			continue
		default:
		}
		break
	}
	return f.flush(ctx)
}

func (f *follower) take(ctx context.Context, r imapwire.Response) error {
	if r.IsStatus() {
		sent, ok := f.probes[r.Tag]
		if !ok {
			return nil
		}
		delete(f.probes, r.Tag)
		if r.Kind != imapwire.KindOK {
			return fmt.Errorf("NOOP answered %s %q", r.Kind, r.Text)
		}
		// Every update sent before this answer is queued before it.
		if err := f.flush(ctx); err != nil {
			return err
		}
		f.stats.Lag = time.Since(sent)
		f.progress()
		return nil
	}
	f.pending = append(f.pending, r)
	if len(f.pending) >= maxGroup {
		return f.flush(ctx)
	}
	return nil
}

func (f *follower) progress() {
	if f.cfg.OnProgress != nil {
		s := f.stats
		s.Pending = len(f.stream)
		f.cfg.OnProgress(s)
	}
}

// flush applies the pending updates in order: MAILBOX is an ACTIVATE
// (upsert), DELETE a delete (already gone is fine: the master sends one
// DELETE per queued change), and RESERVE — the master's current state is
// "reserved at loc" — whatever write gets the entry there.
func (f *follower) flush(ctx context.Context) error {
	if len(f.pending) == 0 {
		return nil
	}
	var cmds []fsm.Command
	for _, r := range f.pending {
		switch r.Kind {
		case imapwire.KindMailbox:
			cmds = append(cmds, Command(mupdateclient.EntryOf(r)))
		case imapwire.KindDelete:
			cmds = append(cmds, fsm.Command{Op: fsm.OpDelete, Name: r.Name})
		case imapwire.KindReserve:
			// The translation depends on the entry's state after the
			// commands before it: apply those first.
			if err := f.apply(ctx, cmds); err != nil {
				return err
			}
			cmds = nil
			rc, err := f.reserveCommands(ctx, mupdateclient.EntryOf(r))
			if err != nil {
				return err
			}
			if err := f.apply(ctx, rc); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: unexpected %s on the update stream", imapwire.ErrProtocol, r.Kind)
		}
	}
	f.pending = f.pending[:0]
	if err := f.apply(ctx, cmds); err != nil {
		return err
	}
	f.progress()
	return nil
}

// reserveCommands returns the writes that leave e.Name RESERVED at
// e.Location, given what Rookery holds now.
func (f *follower) reserveCommands(ctx context.Context, e Entry) ([]fsm.Command, error) {
	cur, _, err := f.t.Get(ctx, e.Name, false)
	switch {
	case isNotFound(err):
		return []fsm.Command{Command(e)}, nil
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", e.Name, err)
	case cur.State == fsm.StateActive:
		// DEACTIVATE is exactly "now reserved at loc" (an XFER's move).
		return []fsm.Command{{Op: fsm.OpDeactivate, Name: e.Name, Location: e.Location, IfRevision: cur.ModRevision}}, nil
	case cur.Location == e.Location:
		return nil, nil
	}
	return []fsm.Command{
		{Op: fsm.OpDelete, Name: e.Name, IfRevision: cur.ModRevision},
		Command(e),
	}, nil
}

func (f *follower) apply(ctx context.Context, cmds []fsm.Command) error {
	if len(cmds) == 0 {
		return nil
	}
	res, err := Apply(ctx, f.t, cmds)
	if err != nil {
		return err
	}
	for i, r := range res {
		code := codes.Code(r.GetCode())
		if code == codes.OK || (cmds[i].Op == fsm.OpDelete && code == codes.NotFound && cmds[i].IfRevision == 0) {
			f.stats.Changes++
			continue
		}
		if f.cfg.OnFailure != nil {
			f.cfg.OnFailure(Failure{Name: cmds[i].Name, Op: cmds[i].Op, Code: code, Message: r.GetMessage()})
		}
	}
	return nil
}

func isNotFound(err error) bool { return err != nil && status.Code(err) == codes.NotFound }
