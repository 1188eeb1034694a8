package fsm

import "strings"

// metaKey is the interned part of an entry.
type metaKey struct {
	loc   string
	acl   string // "" when RESERVED
	by    string // "" when ACTIVE
	state State
}

// meta is a canonical metaKey. Its key fields never change once created,
// so Views and Snapshots read them without locks; refs is touched only by
// the owning live state under the store lock.
type meta struct {
	metaKey
	refs int // live-tree records using it
}

// interner deduplicates metas, and the locations and identities inside
// them, for one live state. It counts references from the live tree and
// forgets values nobody uses, so churn in ACLs does not leak. Records in a
// View or Snapshot keep their meta alive through the pointer alone.
//
// A per-store table is used rather than the unique package: unique costs
// about 230 bytes per distinct value (measured with Go 1.26), and with one
// ACL per user there are hundreds of thousands of distinct values at a
// million mailboxes.
type interner struct {
	metas map[metaKey]*meta
	strs  map[string]*strRef
}

type strRef struct {
	s    string
	refs int
}

func newInterner() interner {
	return interner{metas: map[metaKey]*meta{}, strs: map[string]*strRef{}}
}

// acquire returns the canonical meta for k and counts one more user. hint,
// if not nil, is a meta likely equal to k (the entry's previous one), which
// saves hashing the ACL on the common repeat.
func (in *interner) acquire(k metaKey, hint *meta) *meta {
	if hint != nil && hint.metaKey == k {
		hint.refs++
		return hint
	}
	if m := in.metas[k]; m != nil {
		m.refs++
		return m
	}
	// Copies, so the table never pins a caller's larger buffer.
	k.loc = in.acquireStr(k.loc)
	k.by = in.acquireStr(k.by)
	k.acl = strings.Clone(k.acl)
	m := &meta{metaKey: k, refs: 1}
	in.metas[k] = m
	return m
}

// release drops one user of m.
func (in *interner) release(m *meta) {
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(in.metas, m.metaKey)
	in.releaseStr(m.loc)
	in.releaseStr(m.by)
}

func (in *interner) acquireStr(s string) string {
	if s == "" {
		return ""
	}
	if r := in.strs[s]; r != nil {
		r.refs++
		return r.s
	}
	r := &strRef{s: strings.Clone(s), refs: 1}
	in.strs[r.s] = r
	return r.s
}

func (in *interner) releaseStr(s string) {
	if s == "" {
		return
	}
	r := in.strs[s]
	if r == nil {
		return
	}
	if r.refs--; r.refs == 0 {
		delete(in.strs, s)
	}
}
