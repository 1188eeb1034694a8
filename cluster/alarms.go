package cluster

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Alarm kinds raised by this package. Other causes add their own kinds;
// the set is open.
const (
	// AlarmDiverged: this node's directory hash differs from the one a
	// majority of voters hold at the same revision. Reads are refused
	// until the node is re-seeded (or restarted and found consistent).
	AlarmDiverged = "diverged"
	// AlarmInconsistent: members disagree and no majority holds one hash,
	// so no copy can be trusted. Cleared by a later check in which this
	// node's hash is the majority's.
	AlarmInconsistent = "inconsistent"
	// AlarmDataCheck: the entries in memory no longer add up to the hash
	// maintained as they were applied (memory damage, or a change outside
	// the state machine).
	AlarmDataCheck = "data-check"
	// AlarmDiskLog, AlarmDiskStable and AlarmDiskSnapshot: writes to the
	// raft log, the stable store (term and vote) or a snapshot fail.
	AlarmDiskLog      = "disk-log"
	AlarmDiskStable   = "disk-stable"
	AlarmDiskSnapshot = "disk-snapshot"
	// AlarmHalted: the state machine met a committed entry or snapshot it
	// cannot apply and the node stopped raft (see fsmAdapter).
	AlarmHalted = "halted"
)

// Alarm is one active condition that makes a node unhealthy. While any
// alarm is active the gRPC health service answers NOT_SERVING; an alarm
// with BlocksReads also makes the node refuse reads (they fail with an
// error wrapping ErrReadsRefused, which wraps ErrUnavailable, so clients
// retry on another node).
type Alarm struct {
	Kind    string
	Message string
	Since   time.Time
	// BlocksReads: this node's data cannot be trusted.
	BlocksReads bool
	// NeedsRestart: the condition will not clear by itself.
	NeedsRestart bool
}

// title is how the node's condition is named when this alarm leads it.
func (a Alarm) title() string {
	if a.BlocksReads {
		switch a.Kind {
		case AlarmDiverged:
			return "Diverged"
		case AlarmInconsistent:
			return "Inconsistent"
		}
		return "Failed"
	}
	return "Degraded"
}

// ErrReadsRefused is wrapped by every read on a node with an alarm that
// blocks reads. It is a kind of ErrUnavailable: the client should retry on
// another member.
var ErrReadsRefused = fmt.Errorf("%w: this node refuses reads", ErrUnavailable)

// alarmSet holds a node's active alarms, one per kind. Raising logs at
// ERROR, clearing at INFO, so the log shows every change of health.
type alarmSet struct {
	logger *slog.Logger

	mu     sync.Mutex
	active map[string]Alarm
}

func newAlarmSet(logger *slog.Logger) *alarmSet {
	return &alarmSet{logger: logger, active: map[string]Alarm{}}
}

// raise activates a (or updates its message), keeping the time it first
// became active. It reports whether the alarm is new.
func (s *alarmSet) raise(a Alarm) bool {
	s.mu.Lock()
	old, had := s.active[a.Kind]
	if had {
		a.Since = old.Since
	} else if a.Since.IsZero() {
		a.Since = time.Now()
	}
	s.active[a.Kind] = a
	s.mu.Unlock()
	if !had || old.Message != a.Message {
		s.logger.Error("alarm raised", "alarm", a.Kind, "message", a.Message, "blocks_reads", a.BlocksReads, "needs_restart", a.NeedsRestart)
	}
	return !had
}

// clear deactivates the alarm of kind, if active.
func (s *alarmSet) clear(kind string) {
	s.mu.Lock()
	a, had := s.active[kind]
	delete(s.active, kind)
	s.mu.Unlock()
	if had {
		s.logger.Info("alarm cleared", "alarm", kind, "was", a.Message, "lasted", time.Since(a.Since).Round(time.Millisecond))
	}
}

// list returns the active alarms, read-blocking first, then by kind.
func (s *alarmSet) list() []Alarm {
	s.mu.Lock()
	out := make([]Alarm, 0, len(s.active))
	for _, a := range s.active {
		out = append(out, a)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Alarm) int {
		if a.BlocksReads != b.BlocksReads {
			if a.BlocksReads {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Kind, b.Kind)
	})
	return out
}

// blocking returns the first alarm that blocks reads.
func (s *alarmSet) blocking() (Alarm, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.active {
		if a.BlocksReads {
			return a, true
		}
	}
	return Alarm{}, false
}

// Alarms returns this node's active alarms (empty when healthy), the ones
// that block reads first.
func (n *Node) Alarms() []Alarm { return n.alarms.list() }

// Condition sums up the node's health in one line: "" while healthy, else
// the leading alarm, e.g. "Degraded: raft log writes failing since
// 2026-01-02T03:04:05Z: no space left on device (+1 more)".
func (n *Node) Condition() string { return conditionOf(n.alarms.list()) }

func conditionOf(as []Alarm) string {
	if len(as) == 0 {
		return ""
	}
	c := as[0].title() + ": " + as[0].Message
	if len(as) > 1 {
		c += fmt.Sprintf(" (+%d more)", len(as)-1)
	}
	return c
}

// checkReads fails when an active alarm says this node's data cannot be
// trusted; every read path calls it first.
func (n *Node) checkReads() error {
	if a, ok := n.alarms.blocking(); ok {
		return fmt.Errorf("%w: node %s is %s: %s", ErrReadsRefused, n.cfg.NodeID, strings.ToLower(a.title()), a.Message)
	}
	return nil
}

// CheckReads reports whether this node serves reads: nil, or an error
// wrapping ErrReadsRefused. Reads through LinearizableRead and
// LinearizableGet check it themselves; a stale read of Store() should
// call it first.
func (n *Node) CheckReads() error { return n.checkReads() }
