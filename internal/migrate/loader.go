package migrate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Writer is the part of *client.Client a load uses.
type Writer interface {
	Batch(ctx context.Context, cmds []fsm.Command) (*rookeryv1.BatchResponse, error)
}

// Merge says what to do with a name the target directory already holds.
type Merge int

const (
	// MergeNone: the target must be empty (checked by the caller).
	MergeNone Merge = iota
	// MergeSkipExisting keeps the target's entry and reports a conflict
	// when the source differs.
	MergeSkipExisting
	// MergeOverwrite writes the source's entry and reports a conflict when
	// the target differed.
	MergeOverwrite
)

// ParseMerge reads a --merge value: "", "skip-existing" or "overwrite".
func ParseMerge(s string) (Merge, error) {
	switch s {
	case "":
		return MergeNone, nil
	case "skip-existing":
		return MergeSkipExisting, nil
	case "overwrite":
		return MergeOverwrite, nil
	}
	return 0, fmt.Errorf("merge mode %q: want skip-existing or overwrite", s)
}

// Conflict is a name that both sides hold, differently.
type Conflict struct {
	Name           string
	Target, Source Entry
	KeptTarget     bool // MergeSkipExisting
}

// Failure is a command the directory refused.
type Failure struct {
	Name    string
	Op      fsm.Op
	Code    codes.Code
	Message string
}

// LoaderConfig tunes a Loader.
type LoaderConfig struct {
	// BatchSize is the commands per Batch call (default 4096, at most
	// client.MaxBatch); Concurrency the calls in flight (default 4).
	BatchSize   int
	Concurrency int
	Merge       Merge
	// Existing is the target directory by name, needed with a merge mode.
	Existing map[string]fsm.Entry
	// OnConflict and OnFailure, when set, are called for each (from the
	// loader's goroutines, one at a time).
	OnConflict func(Conflict)
	OnFailure  func(Failure)
}

// Stats counts what a load did.
type Stats struct {
	Read      int64 // entries given to Add
	Written   int64 // commands the directory applied
	Unchanged int64 // entries the target already held identically
	Skipped   int64 // conflicts kept as the target had them
	Conflicts int64
	Failed    int64 // commands the directory refused
}

// Loader writes entries through Batch calls, several in flight. Entries
// must have distinct names (a dump does): batches may apply in any order.
type Loader struct {
	w   Writer
	cfg LoaderConfig
	ctx context.Context

	batch []fsm.Command
	work  chan []fsm.Command
	gate  gate // shared by the workers: one unavailable answer pauses them all
	wg    sync.WaitGroup
	cbMu  sync.Mutex

	read, written, unchanged, skipped, conflicts, failed atomic.Int64

	errMu sync.Mutex
	err   error
}

// NewLoader starts a load; finish it with Close.
func NewLoader(ctx context.Context, w Writer, cfg LoaderConfig) *Loader {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 4096
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	l := &Loader{w: w, cfg: cfg, ctx: ctx, work: make(chan []fsm.Command, cfg.Concurrency)}
	for i := 0; i < cfg.Concurrency; i++ {
		l.wg.Add(1)
		go l.worker()
	}
	return l
}

// Add queues one entry; it blocks while every worker is busy. It returns
// the load's first fatal error, if any.
func (l *Loader) Add(e Entry) error {
	if err := l.failure(); err != nil {
		return err
	}
	l.read.Add(1)
	if ex, ok := l.cfg.Existing[e.Name]; ok {
		if sameEntry(ex, e) {
			l.unchanged.Add(1)
			return nil
		}
		l.conflicts.Add(1)
		c := Conflict{Name: e.Name, Target: toEntry(ex), Source: e, KeptTarget: l.cfg.Merge != MergeOverwrite}
		l.callback(func() {
			if l.cfg.OnConflict != nil {
				l.cfg.OnConflict(c)
			}
		})
		if c.KeptTarget {
			l.skipped.Add(1)
			return nil
		}
		if e.Reserved {
			// RESERVE of a name held elsewhere is refused: remove the
			// target's entry first, in the same batch (applied in order).
			l.batch = append(l.batch, fsm.Command{Op: fsm.OpDelete, Name: e.Name, IfRevision: ex.ModRevision})
		}
	}
	l.batch = append(l.batch, Command(e))
	if len(l.batch) >= l.cfg.BatchSize {
		return l.dispatch()
	}
	return nil
}

// Command is the directory write that recreates e: ACTIVATE, or RESERVE for
// a reservation.
func Command(e Entry) fsm.Command {
	if e.Reserved {
		return fsm.Command{Op: fsm.OpReserve, Name: e.Name, Location: e.Location}
	}
	return fsm.Command{Op: fsm.OpActivate, Name: e.Name, Location: e.Location, ACL: e.ACL}
}

func (l *Loader) dispatch() error {
	b := l.batch
	l.batch = nil
	select {
	case l.work <- b:
		return nil
	case <-l.ctx.Done():
		return l.ctx.Err()
	}
}

// Close writes what is queued, waits for every call, and returns the
// totals and the first fatal error.
func (l *Loader) Close() (Stats, error) {
	var err error
	if len(l.batch) > 0 {
		err = l.dispatch()
	}
	close(l.work)
	l.wg.Wait()
	if ferr := l.failure(); ferr != nil {
		err = ferr
	}
	return l.Stats(), err
}

// Stats returns the totals so far (safe to call while loading).
func (l *Loader) Stats() Stats {
	return Stats{
		Read: l.read.Load(), Written: l.written.Load(), Unchanged: l.unchanged.Load(),
		Skipped: l.skipped.Load(), Conflicts: l.conflicts.Load(), Failed: l.failed.Load(),
	}
}

func (l *Loader) failure() error {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	return l.err
}

func (l *Loader) fail(err error) {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	if l.err == nil {
		l.err = err
	}
}

func (l *Loader) callback(fn func()) {
	l.cbMu.Lock()
	defer l.cbMu.Unlock()
	fn()
}

func (l *Loader) worker() {
	defer l.wg.Done()
	for b := range l.work {
		if l.failure() != nil {
			continue // drain
		}
		res, err := apply(l.ctx, l.w, b, &l.gate)
		if err != nil {
			l.fail(err)
			continue
		}
		l.count(b, res)
	}
}

func (l *Loader) count(cmds []fsm.Command, res []*rookeryv1.BatchResult) {
	for i, r := range res {
		if r.GetCode() == 0 {
			l.written.Add(1)
			continue
		}
		l.failed.Add(1)
		f := Failure{Name: cmds[i].Name, Op: cmds[i].Op, Code: codes.Code(r.GetCode()), Message: r.GetMessage()}
		l.callback(func() {
			if l.cfg.OnFailure != nil {
				l.cfg.OnFailure(f)
			}
		})
	}
}

// retryLimit bounds how long one batch keeps being retried.
const retryLimit = 10 * time.Minute

// Apply writes cmds in order through Batch calls, retrying while the
// cluster is unavailable (a leader election, an overloaded leader): every
// command an importer sends is safe to repeat (ACTIVATE is an upsert,
// RESERVE at the same location succeeds again, a repeated DELETE answers
// NOT_FOUND). It returns one result per command.
func Apply(ctx context.Context, w Writer, cmds []fsm.Command) ([]*rookeryv1.BatchResult, error) {
	return apply(ctx, w, cmds, &gate{})
}

// gate holds back every sender until a time: after an unavailable answer
// all of a load's calls pause together instead of each retrying at once
// into a leader that is already behind.
type gate struct{ until atomic.Int64 }

func (g *gate) wait(ctx context.Context) error {
	for {
		d := time.Until(time.Unix(0, g.until.Load()))
		if d <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
}

func (g *gate) pause(d time.Duration) {
	t := time.Now().Add(d).UnixNano()
	for {
		u := g.until.Load()
		if u >= t || g.until.CompareAndSwap(u, t) {
			return
		}
	}
}

func apply(ctx context.Context, w Writer, cmds []fsm.Command, g *gate) ([]*rookeryv1.BatchResult, error) {
	out := make([]*rookeryv1.BatchResult, len(cmds))
	pending := make([]int, len(cmds))
	for i := range pending {
		pending[i] = i
	}
	deadline := time.Now().Add(retryLimit)
	backoff := 100 * time.Millisecond
	for len(pending) > 0 {
		if err := g.wait(ctx); err != nil {
			return nil, err
		}
		batch := make([]fsm.Command, len(pending))
		for j, i := range pending {
			batch[j] = cmds[i]
		}
		resp, err := w.Batch(ctx, batch)
		var retry []int
		lastErr := err
		switch {
		case err == nil && len(resp.GetResults()) != len(batch):
			return nil, fmt.Errorf("migrate: %d results for %d commands", len(resp.GetResults()), len(batch))
		case err == nil:
			for j, r := range resp.GetResults() {
				if transient(codes.Code(r.GetCode())) {
					retry = append(retry, pending[j])
					lastErr = errors.New(r.GetMessage())
					continue
				}
				out[pending[j]] = r
			}
		case transient(status.Code(err)):
			retry = pending
		default:
			return nil, err
		}
		if len(retry) == 0 {
			return out, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("migrate: cluster unavailable for %s: %w", retryLimit, lastErr)
		}
		g.pause(backoff)
		backoff = min(2*backoff, 5*time.Second)
		pending = retry
	}
	return out, nil
}

func transient(c codes.Code) bool { return c == codes.Unavailable || c == codes.DeadlineExceeded }

func sameEntry(ex fsm.Entry, e Entry) bool {
	if e.Reserved {
		return ex.State == fsm.StateReserved && ex.Location == e.Location
	}
	return ex.State == fsm.StateActive && ex.Location == e.Location && ex.ACL == e.ACL
}

func toEntry(ex fsm.Entry) Entry {
	return Entry{Name: ex.Name, Location: ex.Location, ACL: ex.ACL, Reserved: ex.State == fsm.StateReserved}
}
