package fsm

import "strings"

// apply runs one command against the live state. It must be deterministic:
// everything it reads comes from the command or the state.
func (st *state) apply(c *Command) Result {
	if Validate(*c) != nil {
		return Result{Code: CodeInvalid}
	}
	if c.Op == OpSetPeer {
		st.setPeer(c.Name, c.Location)
		return Result{Code: CodeOK}
	}
	key := DBNameKey(c.Name)
	old, _ := st.tree.Get(probe(key))
	if code := authorize(c, old); code != CodeOK {
		return Result{Code: code}
	}
	next, code := decide(c, old)
	if code != CodeOK {
		return Result{Code: code}
	}
	return Result{Code: CodeOK, Revision: st.commit(c, key, old, next)}
}

func (st *state) setPeer(id, addr string) {
	if addr == "" {
		delete(st.peers, id)
		return
	}
	st.peers[strings.Clone(id)] = strings.Clone(addr)
}

// decide is the MUPDATE standard-mode semantics of the write commands
// (docs/mupdate.md §5): given the command and the current record (nil if
// absent) it returns the new interned fields, or a failure code. For a
// DELETE the returned metaKey is unused.
func decide(c *Command, old *record) (metaKey, Code) {
	if code := checkRevision(c, old); code != CodeOK {
		return metaKey{}, code
	}
	reserved := metaKey{state: StateReserved, loc: c.Location, by: c.Identity}
	switch c.Op {
	case OpReserve:
		// A name held elsewhere is refused; the same location resets
		// the entry to RESERVED and clears its ACL.
		if old != nil && old.meta.loc != c.Location {
			return metaKey{}, CodeExists
		}
		return reserved, CodeOK
	case OpActivate:
		// Unconditional upsert (RFC 3656 §4.1).
		return metaKey{state: StateActive, loc: c.Location, acl: c.ACL}, CodeOK
	case OpDeactivate:
		switch {
		case old == nil:
			return metaKey{}, CodeNotFound
		case old.meta.state != StateActive:
			return metaKey{}, CodeNotActive
		}
		// RESERVED at the location given in the command.
		return reserved, CodeOK
	case OpDelete:
		if old == nil {
			return metaKey{}, CodeNotFound
		}
		return metaKey{}, CodeOK
	}
	return metaKey{}, CodeInvalid
}

// checkRevision is the compare-and-set step: a command with IfRevision
// applies only to the entry exactly as it was at that revision. An absent
// entry never matches, so a conditional DELETE of a name that was removed
// and created again is refused rather than removing the newcomer.
func checkRevision(c *Command, old *record) Code {
	if c.IfRevision == 0 {
		return CodeOK
	}
	if old == nil || old.modRevision != c.IfRevision {
		return CodeConflict
	}
	return CodeOK
}

// commit applies a decided change to the entry keyed key (old is its
// current record, nil if absent): the tree, the interner, the stats and the
// history. It returns the new revision.
func (st *state) commit(c *Command, key string, old *record, next metaKey) uint64 {
	rev := st.revision + 1
	var ev histEvent
	var added *record
	if c.Op == OpDelete {
		st.tree.Delete(old)
		st.ix.remove(old)
		ev = histEvent{key: old.key, meta: old.meta, reservedAt: old.reservedAt,
			createRevision: old.createRevision, modRevision: old.modRevision}
		ev.typ = EventDelete
	} else {
		r := &record{key: key, createRevision: rev, modRevision: rev}
		var hint *meta
		if old != nil {
			// Share the stored key; a meta equal to the old one is
			// reused without hashing.
			r.key, r.createRevision, hint = old.key, old.createRevision, old.meta
		}
		r.meta = st.in.acquire(next, hint)
		if next.state == StateReserved {
			r.reservedAt = c.Time
		}
		st.tree.ReplaceOrInsert(r)
		added = r
		st.ix.put(old, r)
		st.stats.add(r.meta)
		ev = histEvent{key: r.key, meta: r.meta, reservedAt: r.reservedAt,
			createRevision: r.createRevision, modRevision: r.modRevision}
		ev.typ = EventPut
	}
	if added == nil || old == nil {
		st.churn++
	}
	if old != nil {
		ev.prev = old.meta
		st.stats.remove(old.meta)
		st.in.release(old.meta) // after acquire, so a shared meta survives
	}
	ev.op = c.Op
	st.revision = rev
	st.statsCache = nil
	st.sum.change(rev, old, added)
	st.hist.append(ev)
	return rev
}
