package fsm

// apply runs one command against the live state. It must be deterministic:
// everything it reads comes from the command or the state.
func (st *state) apply(c *Command) Result {
	if Validate(*c) != nil {
		return Result{Code: CodeInvalid}
	}
	if c.Op == OpSetPeer {
		if c.Location == "" {
			delete(st.peers, c.Name)
		} else {
			st.peers[c.Name] = c.Location
		}
		return Result{Code: CodeOK}
	}

	key := DBNameKey(c.Name)
	old, exists := st.tree.Get(probe(key))
	if exists {
		key = old.key // share the stored key string with the new record
	}
	rev := st.revision + 1
	var next *record
	switch c.Op {
	case OpReserve:
		// Standard mode: a name held elsewhere is refused; the same
		// location resets the entry to RESERVED (reference §1.6.8).
		if exists && old.location() != c.Location {
			return Result{Code: CodeExists}
		}
		next = st.reserved(key, c, rev)
	case OpActivate:
		// Unconditional upsert (RFC 3656 §4.1).
		next = &record{key: key, loc: intern(c.Location), acl: intern(c.ACL), modRevision: rev}
	case OpDeactivate:
		switch {
		case !exists:
			return Result{Code: CodeNotFound}
		case old.res != nil:
			return Result{Code: CodeNotActive}
		}
		next = st.reserved(key, c, rev)
	case OpDelete:
		if !exists {
			return Result{Code: CodeNotFound}
		}
	}

	if exists {
		st.stats.remove(old)
	}
	ev := Event{Revision: rev, Op: c.Op}
	if exists {
		ev.PrevLocation = old.location()
	}
	if next == nil { // delete
		st.tree.Delete(old)
		ev.Type = EventDelete
		ev.Entry = old.entry(c.Name)
	} else {
		next.createRevision = rev
		if exists {
			next.createRevision = old.createRevision
		}
		st.tree.ReplaceOrInsert(next)
		st.stats.add(next)
		ev.Type = EventPut
		ev.Entry = next.entry(c.Name)
	}
	st.revision = rev
	st.statsCache = nil
	st.hist.append(ev)
	return Result{Code: CodeOK, Revision: rev}
}

func (st *state) reserved(key string, c *Command, rev uint64) *record {
	return &record{
		key:         key,
		loc:         intern(c.Location),
		acl:         intern(""),
		res:         &reservation{by: intern(c.Identity), at: c.Time},
		modRevision: rev,
	}
}
