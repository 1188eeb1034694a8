package fsm

// history keeps the last size events in revision order.
//
// It is an append-only slice that is compacted by copying into a fresh
// array, never by overwriting in place: a Snapshot holding a sub-slice keeps
// seeing exactly the events it captured while Apply goes on, without the
// snapshot having to copy them.
type history struct {
	size   int
	events []Event
}

// slack bounds both the extra memory (events beyond size) and how often
// the kept events are copied.
func (h *history) slack() int { return max(h.size/4, 64) }

func (h *history) append(ev Event) {
	if h.size <= 0 {
		return
	}
	if len(h.events) == cap(h.events) && len(h.events) >= h.size {
		keep := h.events[len(h.events)-h.size+1:]
		fresh := make([]Event, len(keep), h.size+h.slack())
		copy(fresh, keep)
		h.events = fresh
	}
	h.events = append(h.events, ev)
}

// all returns the kept events, at most size of them. The result shares
// memory with the history and must not be modified.
func (h *history) all() []Event {
	if len(h.events) > h.size {
		return h.events[len(h.events)-h.size:]
	}
	return h.events
}

// EventsSince returns up to max events with revision > from, in order; max
// ≤ 0 means no limit. A from older than the history returns a
// *CompactedError (ErrCompacted): the caller re-reads a View and resumes
// from its revision. A from at or beyond the current revision returns no
// events and no error; the caller waits on Changed.
func (s *Store) EventsSince(from uint64, max int) ([]Event, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return eventsSince(s.st.hist.all(), s.st.revision, from, max)
}

func eventsSince(evs []Event, current, from uint64, max int) ([]Event, error) {
	if from >= current {
		return nil, nil
	}
	// evs holds revisions current-len+1 .. current; a resume from
	// oldest-1 is still served.
	compact := current - uint64(len(evs))
	if from < compact {
		return nil, &CompactedError{Requested: from, Compact: compact, Current: current}
	}
	out := evs[from-compact:]
	if max > 0 && len(out) > max {
		out = out[:max]
	}
	return append([]Event(nil), out...), nil
}
