package fsm

// record is one entry as held in the tree. Records are immutable once
// inserted: a change inserts a new record, so a cloned tree (View, Snapshot)
// keeps seeing the old one.
//
// The layout is chosen for memory at ten million mailboxes: 48 bytes (a
// size class of its own), the name stored once as its dbname key, and the
// low-cardinality fields (state, location, ACL, reserving identity) folded
// into one interned meta shared by every entry with the same values: a
// user's folders usually share location and ACL.
type record struct {
	key            string // DBNameKey(name)
	meta           *meta
	reservedAt     int64 // 0 unless RESERVED
	createRevision uint64
	modRevision    uint64
}

func lessRecord(a, b *record) bool { return a.key < b.key }

// probe returns a record usable only as a tree lookup key.
func probe(key string) *record { return &record{key: key} }

// entry materialises the public form. name may be passed when the caller
// already holds it, saving the key inversion.
func (r *record) entry(name string) Entry {
	if name == "" {
		name = NameFromDBKey(r.key)
	}
	return Entry{
		Name:           name,
		State:          r.meta.state,
		Location:       r.meta.loc,
		ACL:            r.meta.acl,
		CreateRevision: r.createRevision,
		ModRevision:    r.modRevision,
		ReservedBy:     r.meta.by,
		ReservedAt:     r.reservedAt,
	}
}
