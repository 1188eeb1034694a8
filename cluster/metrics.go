package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// Hooks let a metrics layer observe the node without this package
// depending on one. Nil fields are skipped; hooks run on hot paths and must
// not block.
type Hooks struct {
	// StoreLogs is called after every append to the raft log store with
	// how long it took: the disk write and its sync(s).
	StoreLogs func(d time.Duration, entries int, err error)
	// ProposalFailed is called when a write (Apply, ApplyCommitted) fails
	// as a whole, with a short reason: "no_leader" (it never reached a
	// leader's log), "timeout" (outcome unknown after WriteTimeout),
	// "unavailable" (outcome unknown, e.g. leadership lost mid-write),
	// "canceled" (the caller gave up), "shutdown" or "other".
	ProposalFailed func(reason string)
	// LeaderRead is called for every read index the leader takes, with
	// whether its lease gave it (ReadLease) or it took a heartbeat round.
	LeaderRead func(lease bool)
	// JournalCheckpoint is called after each checkpoint of raft.journal
	// into raft.db (docs/log-journal.md) with its duration, the entries it
	// wrote and its error; the append that triggered it waited that long.
	JournalCheckpoint func(d time.Duration, entries int, err error)
}

// ProposalFailureReason classifies an error returned by Apply for
// Hooks.ProposalFailed.
func ProposalFailureReason(err error) string {
	switch {
	case errors.Is(err, ErrShutdown):
		return "shutdown"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, errNotApplied):
		return "no_leader"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	}
	return "other"
}

// proposalFailed reports a failed write to the hooks.
func (n *Node) proposalFailed(err error) {
	if f := n.cfg.Hooks.ProposalFailed; f != nil && err != nil {
		f(ProposalFailureReason(err))
	}
}

// timedLogStore reports how long each append to the log store takes. It
// wraps the store raft writes to (the log cache over bolt or the WAL) and
// passes IsMonotonic through, which raft-wal needs after a snapshot
// install.
type timedLogStore struct {
	raft.LogStore
	observe func(time.Duration, int, error)
}

func withStoreTiming(s raft.LogStore, observe func(time.Duration, int, error)) raft.LogStore {
	if observe == nil {
		return s
	}
	return &timedLogStore{LogStore: s, observe: observe}
}

func (t *timedLogStore) StoreLog(l *raft.Log) error {
	start := time.Now()
	err := t.LogStore.StoreLog(l)
	t.observe(time.Since(start), 1, err)
	return err
}

func (t *timedLogStore) StoreLogs(logs []*raft.Log) error {
	start := time.Now()
	err := t.LogStore.StoreLogs(logs)
	t.observe(time.Since(start), len(logs), err)
	return err
}

// IsMonotonic implements raft.MonotonicLogStore for the wrapped store.
func (t *timedLogStore) IsMonotonic() bool {
	m, ok := t.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}
