package fsm

import (
	"iter"
	"strings"

	"github.com/google/btree"
)

// index holds the secondary indexes over the live tree. Both are
// copy-on-write B-trees of the same immutable *record pointers as the main
// tree, updated in the same commit and cloned with it, so a View sees all
// three at one revision.
//
//   - byServer orders every entry by (server part of its location, key):
//     one server's entries are a contiguous range in dbname order, so a
//     location listing (MUPDATE LIST, gRPC List by location, ctl_mboxlist
//     -m) costs O(that server's entries) instead of a scan of the directory.
//   - reserved holds the RESERVED entries by key: stuck reservations are
//     listed in O(reservations).
//
// The price is one more pointer slot per entry in byServer's nodes (about
// 12 bytes per mailbox at degree 32) and one more tree update per change.
type index struct {
	byServer *btree.BTreeG[*record]
	reserved *btree.BTreeG[*record]
}

func newIndex() index {
	return index{
		byServer: btree.NewG(btreeDegree, lessByServer),
		reserved: btree.NewG(btreeDegree, lessRecord),
	}
}

// lessByServer orders by server part, then by key. The server is found in
// the location on each comparison rather than stored, which would cost a
// string header per meta. Locations are interned, so the common case —
// two records at the same location — is a pointer comparison.
func lessByServer(a, b *record) bool {
	if la, lb := a.meta.loc, b.meta.loc; la != lb {
		if sa, sb := ServerOf(la), ServerOf(lb); sa != sb {
			return sa < sb
		}
	}
	return a.key < b.key
}

// serverProbe returns a lookup record that sorts before every entry of
// server whose key is ≥ key.
func serverProbe(server, key string) *record {
	return &record{key: key, meta: &meta{metaKey: metaKey{loc: server}}}
}

// put records r, which replaces old (nil when r is new).
func (ix *index) put(old, r *record) {
	if old != nil && ServerOf(old.meta.loc) != ServerOf(r.meta.loc) {
		ix.byServer.Delete(old)
	}
	ix.byServer.ReplaceOrInsert(r)
	switch {
	case r.meta.state == StateReserved:
		ix.reserved.ReplaceOrInsert(r)
	case old != nil && old.meta.state == StateReserved:
		ix.reserved.Delete(old)
	}
}

// remove forgets a deleted entry.
func (ix *index) remove(old *record) {
	ix.byServer.Delete(old)
	if old.meta.state == StateReserved {
		ix.reserved.Delete(old)
	}
}

// fill loads records into the main tree and the indexes of a new state
// (Restore, compact). each must yield them in descending key order.
//
// google/btree splits a full node in the middle and keeps the left half in
// the old, full-capacity slice: ascending inserts (what applies mostly are:
// new users, a batch of imported names) leave every node half full, about
// 8 bytes per entry and tree wasted. Descending inserts refill the left
// half, and each split-off right half is a right-sized slice that is never
// touched again, so filled trees are nearly dense. In byServer each
// server's range receives its own keys in descending order too, which is
// all it takes.
func (st *state) fill(each func(yield func(*record) bool)) {
	each(func(r *record) bool {
		st.tree.ReplaceOrInsert(r)
		st.ix.byServer.ReplaceOrInsert(r)
		if r.meta.state == StateReserved {
			st.ix.reserved.ReplaceOrInsert(r)
		}
		return true
	})
}

// compactShare: a snapshot rebuilds the trees dense (compact) once the
// entries inserted or deleted since they were last built reach this share
// of the entries, so the rebuilds of a growing store cost a constant
// multiple of its final size.
const compactShare = 4

// compact rebuilds the store's trees dense (see fill) from sn, which holds
// the records as of its revision, then replays onto them the changes
// applied since, from the history, and swaps them in. The rebuild runs
// outside the lock, on the goroutine writing the snapshot; the replay holds
// it for O(changes since). It gives up, changing nothing, when the state
// was restored meanwhile or the history no longer reaches back to sn.
func (s *Store) compact(sn *Snapshot) {
	dense := state{tree: btree.NewG(btreeDegree, lessRecord), ix: newIndex()}
	dense.fill(func(yield func(*record) bool) { sn.tree.Descend(yield) })
	s.mu.Lock()
	defer s.mu.Unlock()
	evs, since := s.st.hist.view(), s.st.revision-sn.revision
	if s.restores != sn.restores || since > uint64(evs.len()) {
		return
	}
	for i := evs.len() - int(since); i < evs.len(); i++ {
		key := evs.at(i).key
		old, _ := dense.tree.Get(probe(key))
		if r, ok := s.st.tree.Get(probe(key)); ok {
			dense.tree.ReplaceOrInsert(r)
			dense.ix.put(old, r)
		} else if old != nil {
			dense.tree.Delete(old)
			dense.ix.remove(old)
		}
	}
	s.st.tree, s.st.ix, s.st.churn = dense.tree, dense.ix, int(since)
}

// clone returns a copy-on-write copy; the caller holds the store lock.
func (ix *index) clone() index {
	return index{byServer: ix.byServer.Clone(), reserved: ix.reserved.Clone()}
}

// scanServer visits the entries of one server with key > after (every
// entry when after is ""), in key order, until fn returns false. It
// reports whether fn wanted more.
func scanServer(t *btree.BTreeG[*record], server, afterKey string, fn func(*record) bool) bool {
	start := ""
	if afterKey != "" {
		start = afterKey + "\x00"
	}
	more := true
	t.AscendGreaterOrEqual(serverProbe(server, start), func(r *record) bool {
		if ServerOf(r.meta.loc) != server {
			return false
		}
		more = fn(r)
		return more
	})
	return more
}

// serversWithPrefix lists the distinct servers whose name starts with
// prefix, in order, by hopping from one server's range to the next: it
// costs O(servers × log n), not O(entries).
func serversWithPrefix(t *btree.BTreeG[*record], prefix string) []string {
	var out []string
	from := prefix
	for {
		var next string
		found := false
		t.AscendGreaterOrEqual(serverProbe(from, ""), func(r *record) bool {
			next, found = ServerOf(r.meta.loc), true
			return false
		})
		if !found || !strings.HasPrefix(next, prefix) {
			return out
		}
		out = append(out, next)
		from = next + "\x00" // the smallest server name after next
	}
}

// scanLocation visits the entries whose location starts with prefix and
// whose key is > afterKey, in key (Compare) order.
//
// With a '!' in the prefix only one server can match. Without one, every
// matching entry's server starts with the prefix, and the servers' ranges
// are merged back into key order.
func (ix *index) scanLocation(prefix, afterKey string, fn func(*record) bool) {
	match := func(r *record) bool { return strings.HasPrefix(r.meta.loc, prefix) }
	if i := strings.IndexByte(prefix, '!'); i >= 0 {
		scanServer(ix.byServer, prefix[:i], afterKey, func(r *record) bool {
			if !match(r) {
				return true
			}
			return fn(r)
		})
		return
	}
	servers := serversWithPrefix(ix.byServer, prefix)
	switch len(servers) {
	case 0:
		return
	case 1:
		scanServer(ix.byServer, servers[0], afterKey, fn)
		return
	}
	mergeServers(ix.byServer, servers, afterKey, fn)
}

// mergeServers merges several servers' ranges (each in key order) into
// one stream in key order.
func mergeServers(t *btree.BTreeG[*record], servers []string, afterKey string, fn func(*record) bool) {
	type cursor struct {
		next func() (*record, bool)
		stop func()
		head *record
	}
	cs := make([]*cursor, 0, len(servers))
	defer func() {
		for _, c := range cs {
			c.stop()
		}
	}()
	for _, srv := range servers {
		seq := iter.Seq[*record](func(yield func(*record) bool) {
			scanServer(t, srv, afterKey, yield)
		})
		next, stop := iter.Pull(seq)
		c := &cursor{next: next, stop: stop}
		cs = append(cs, c)
		if r, ok := next(); ok {
			c.head = r
		}
	}
	for {
		var best *cursor
		for _, c := range cs {
			if c.head != nil && (best == nil || c.head.key < best.head.key) {
				best = c
			}
		}
		if best == nil {
			return
		}
		if !fn(best.head) {
			return
		}
		if r, ok := best.next(); ok {
			best.head = r
		} else {
			best.head = nil
		}
	}
}
