package fsm

import (
	"strings"

	"github.com/google/btree"
)

// View is a consistent, immutable view of the directory at one revision.
// It is safe for concurrent use and stays valid while the store changes.
type View struct {
	tree     *btree.BTreeG[*record]
	ix       index
	revision uint64
	applied  uint64
	stats    *Stats // immutable
}

// Revision is the revision the view was taken at: EventsSince(Revision())
// continues exactly after it.
func (v *View) Revision() uint64 { return v.revision }

// AppliedIndex is the raft log index of the last entry the view includes.
func (v *View) AppliedIndex() uint64 { return v.applied }

// Get returns the entry for name as of the view.
func (v *View) Get(name string) (Entry, bool) {
	r, ok := v.tree.Get(probe(DBNameKey(name)))
	if !ok {
		return Entry{}, false
	}
	return r.entry(name), true
}

// Len returns the number of entries.
func (v *View) Len() int { return v.tree.Len() }

// Stats counts the view's entries per state and per server.
func (v *View) Stats() Stats { return v.stats.clone() }

// ScanName calls fn for every entry whose name starts with prefix (bytewise),
// in Compare order, until fn returns false. An empty prefix visits all.
func (v *View) ScanName(prefix string, fn func(Entry) bool) {
	v.ScanNameFrom(prefix, "", fn)
}

// ScanNameFrom is ScanName limited to names sorting strictly after `after`
// in Compare order; "" means from the start. It serves pagination: pass the
// last name of the previous page.
//
// A name prefix maps to at most two key ranges. DBNameKey turns '.' into
// 0x1F only after the domain separator '!', or everywhere when there is no
// '!'. For a prefix with a '!' (or without a '.'), every matching name's key
// starts with DBNameKey(prefix). For a prefix with a '.' but no '!', names
// without a domain match under DBNameKey(prefix), while names with a domain
// ("example.com!user.a" for prefix "example.c") keep their dots before the
// '!' and match under the raw prefix. The first range sorts entirely before
// the second (0x1F < '.'), so visiting them in turn keeps Compare order.
func (v *View) ScanNameFrom(prefix, after string, fn func(Entry) bool) {
	if strings.ContainsAny(prefix, "\x1d\x1f") {
		return // no valid name holds these bytes
	}
	kp := DBNameKey(prefix)
	start := ""
	if after != "" {
		start = DBNameKey(after) + "\x00" // smallest key > after's
	}
	if !v.scanKeyPrefix(kp, start, fn) {
		return
	}
	if strings.IndexByte(prefix, '!') < 0 && strings.IndexByte(prefix, '.') >= 0 {
		// Only keys holding a domain separator can match here.
		v.scanKeyPrefix(prefix, start, fn)
	}
}

// scanKeyPrefix visits keys starting with kp and ≥ start; it reports
// whether fn wants more.
func (v *View) scanKeyPrefix(kp, start string, fn func(Entry) bool) bool {
	more := true
	v.tree.AscendGreaterOrEqual(probe(max(kp, start)), func(r *record) bool {
		if !strings.HasPrefix(r.key, kp) {
			return false
		}
		more = fn(r.entry(""))
		return more
	})
	return more
}

// ScanLocation calls fn for every entry whose location starts with prefix
// (bytewise, as MUPDATE LIST does), in Compare order, until fn returns false.
//
// A prefix naming a server ("be1!" or "be1!default") costs O(that server's
// entries) through the server index; a prefix without '!' merges the
// ranges of every server it matches. The empty prefix visits everything.
func (v *View) ScanLocation(prefix string, fn func(Entry) bool) {
	v.ScanLocationFrom(prefix, "", fn)
}

// ScanLocationFrom is ScanLocation limited to names sorting strictly after
// `after` in Compare order ("" means from the start), for pagination.
func (v *View) ScanLocationFrom(prefix, after string, fn func(Entry) bool) {
	afterKey := ""
	if after != "" {
		afterKey = DBNameKey(after)
	}
	if prefix == "" {
		v.tree.AscendGreaterOrEqual(probe(afterKey+"\x00"), func(r *record) bool { return fn(r.entry("")) })
		return
	}
	v.ix.scanLocation(prefix, afterKey, func(r *record) bool { return fn(r.entry("")) })
}

// ScanReserved calls fn for every RESERVED entry, in Compare order, until
// fn returns false. It costs O(reservations), not O(entries).
func (v *View) ScanReserved(fn func(Entry) bool) { v.ScanReservedFrom("", fn) }

// ScanReservedFrom is ScanReserved limited to names sorting strictly after
// `after` ("" means from the start), for pagination.
func (v *View) ScanReservedFrom(after string, fn func(Entry) bool) {
	start := ""
	if after != "" {
		start = DBNameKey(after) + "\x00"
	}
	v.ix.reserved.AscendGreaterOrEqual(probe(start), func(r *record) bool { return fn(r.entry("")) })
}
