package fsm

// histEvent is an Event as the history keeps it: it shares the record's key
// and metas instead of holding strings, so an event costs 64 bytes and no
// allocation of its own. The revision follows from its position.
type histEvent struct {
	key            string
	meta           *meta // the new entry (put) or the removed one (delete)
	prev           *meta // the entry before the change; nil if absent
	reservedAt     int64
	createRevision uint64
	modRevision    uint64
	op             Op
	typ            EventType
}

func (h *histEvent) event(rev uint64) Event {
	ev := Event{
		Revision: rev,
		Type:     h.typ,
		Op:       h.op,
		Entry: Entry{
			Name:           NameFromDBKey(h.key),
			State:          h.meta.state,
			Location:       h.meta.loc,
			ACL:            h.meta.acl,
			CreateRevision: h.createRevision,
			ModRevision:    h.modRevision,
			ReservedBy:     h.meta.by,
			ReservedAt:     h.reservedAt,
		},
	}
	if h.prev != nil {
		ev.PrevLocation = h.prev.loc
	}
	return ev
}

// histChunk is the number of events per history chunk (64 KiB).
const histChunk = 1024

// history keeps the last size events in revision order.
//
// Events live in fixed-size chunks that are filled by appending and dropped
// whole from the front; nothing is ever overwritten or copied. A histView
// (what a Snapshot or EventsSince holds) is a copy of the chunk headers, so
// it keeps seeing exactly the events it captured while Apply goes on, and
// the history never moves megabytes around.
type history struct {
	size   int
	chunks [][]histEvent // all full except the last
	n      int           // events in chunks; may exceed size by < histChunk
}

func (h *history) append(ev histEvent) {
	if h.size <= 0 {
		return
	}
	last := len(h.chunks) - 1
	if last < 0 || len(h.chunks[last]) == histChunk {
		h.chunks = append(h.chunks, make([]histEvent, 0, histChunk))
		last++
	}
	h.chunks[last] = append(h.chunks[last], ev)
	h.n++
	if h.n-len(h.chunks[0]) >= h.size {
		h.n -= len(h.chunks[0])
		h.chunks = append([][]histEvent(nil), h.chunks[1:]...)
	}
}

// view returns the kept events, the last min(n, size) of them.
func (h *history) view() histView {
	keep := min(h.n, max(h.size, 0))
	return histView{chunks: append([][]histEvent(nil), h.chunks...), skip: h.n - keep, n: keep}
}

// histView is an immutable window of n events starting skip events into
// chunks.
type histView struct {
	chunks [][]histEvent
	skip   int
	n      int
}

func (v histView) len() int { return v.n }

func (v histView) at(i int) *histEvent {
	i += v.skip
	// All chunks but the last are full, so the index arithmetic is exact.
	return &v.chunks[i/histChunk][i%histChunk]
}

// EventsSince returns up to max events with revision > from, in order; max
// ≤ 0 means no limit. A from older than the history returns a
// *CompactedError (ErrCompacted): the caller re-reads a View and resumes
// from its revision. A from at or beyond the current revision returns no
// events and no error; the caller waits on Changed.
func (s *Store) EventsSince(from uint64, max int) ([]Event, error) {
	s.mu.RLock()
	evs, current := s.st.hist.view(), s.st.revision
	s.mu.RUnlock()
	// evs is immutable (see history), so it is converted unlocked.
	return eventsSince(evs, current, from, max)
}

func eventsSince(evs histView, current, from uint64, max int) ([]Event, error) {
	if from >= current {
		return nil, nil
	}
	// evs holds revisions current-len+1 .. current; a resume from
	// oldest-1 is still served.
	compact := current - uint64(evs.len())
	if from < compact {
		return nil, &CompactedError{Requested: from, Compact: compact, Current: current}
	}
	start := int(from - compact)
	n := evs.len() - start
	if max > 0 && n > max {
		n = max
	}
	out := make([]Event, n)
	for i := range out {
		out[i] = evs.at(start + i).event(from + 1 + uint64(i))
	}
	return out, nil
}
