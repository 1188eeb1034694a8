package fsm

import (
	"strings"
	"unique"
)

// record is one entry as held in the tree. Records are immutable once
// inserted: a change inserts a new record, so a cloned tree (View, Snapshot)
// keeps seeing the old one.
//
// The layout is chosen for memory at ten million mailboxes (56 bytes, the
// 64-byte size class): the name is stored once, as its dbname key; the few
// distinct locations and the per-user ACLs are interned handles; reservation
// metadata, needed only while RESERVED, sits behind a pointer that is nil for
// ACTIVE entries, so it doubles as the state.
type record struct {
	key            string // DBNameKey(name)
	loc            unique.Handle[string]
	acl            unique.Handle[string]
	res            *reservation // nil: ACTIVE; non-nil: RESERVED
	createRevision uint64
	modRevision    uint64
}

type reservation struct {
	by unique.Handle[string]
	at int64
}

func lessRecord(a, b *record) bool { return a.key < b.key }

// probe returns a record usable only as a tree lookup key.
func probe(key string) *record { return &record{key: key} }

// intern returns the canonical handle of s.
func intern(s string) unique.Handle[string] { return unique.Make(s) }

// str returns the string of a handle; the zero handle is "".
func str(h unique.Handle[string]) string {
	if h == (unique.Handle[string]{}) {
		return ""
	}
	return h.Value()
}

func (r *record) state() State {
	if r.res != nil {
		return StateReserved
	}
	return StateActive
}

func (r *record) location() string { return str(r.loc) }

// entry materialises the public form. name may be passed when the caller
// already holds it, saving the key inversion.
func (r *record) entry(name string) Entry {
	if name == "" {
		name = NameFromDBKey(r.key)
	}
	e := Entry{
		Name:           name,
		State:          StateActive,
		Location:       str(r.loc),
		ACL:            str(r.acl),
		CreateRevision: r.createRevision,
		ModRevision:    r.modRevision,
	}
	if r.res != nil {
		e.State = StateReserved
		e.ReservedBy = str(r.res.by)
		e.ReservedAt = r.res.at
	}
	return e
}

// recordFromEntry builds a record from a validated entry (Restore).
func recordFromEntry(key string, e Entry) *record {
	r := &record{
		key:            key,
		loc:            intern(e.Location),
		createRevision: e.CreateRevision,
		modRevision:    e.ModRevision,
	}
	if e.State == StateReserved {
		r.res = &reservation{by: intern(e.ReservedBy), at: e.ReservedAt}
	} else {
		r.acl = intern(e.ACL)
	}
	return r
}

func hasPrefix(s, prefix string) bool { return strings.HasPrefix(s, prefix) }
