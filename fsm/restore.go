package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Restore replaces the whole state from a snapshot stream written by
// Snapshot.WriteTo.
//
// The new state is built and fully checked (structure, limits, key order,
// revision bounds, checksum, end of stream) before it replaces the current
// one, so a corrupt, truncated or foreign stream returns an error wrapping
// ErrCorrupt (or the reader's error) and leaves the store as it was. The
// restored history is trimmed to this store's HistorySize. Watchers are
// signalled through Changed.
func (s *Store) Restore(r io.Reader) error {
	st, err := readSnapshot(r, s.cfg.historySize())
	if err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	st.sum.reset(st.revision, treeHash(st.tree))
	s.mu.Lock()
	s.st = st
	s.restores++
	s.notifyLocked()
	s.mu.Unlock()
	return nil
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

func readSnapshot(r io.Reader, historySize int) (state, error) {
	d := &snapDecoder{r: r, buf: make([]byte, 0, snapBufSize)}
	st := newState(historySize)
	if err := d.header(&st); err != nil {
		return state{}, err
	}
	if err := d.peers(&st); err != nil {
		return state{}, err
	}
	if err := d.entries(&st); err != nil {
		return state{}, err
	}
	if err := d.history(&st); err != nil {
		return state{}, err
	}
	if err := d.trailer(); err != nil {
		return state{}, err
	}
	return st, nil
}

func (d *snapDecoder) header(st *state) error {
	magic := d.bytes(len(snapshotMagic))
	if d.err != nil {
		return d.fail("header")
	}
	if string(magic) != snapshotMagic {
		return corrupt("not an fsm snapshot (bad magic %q)", magic)
	}
	if v := d.byte(); d.err == nil && v != snapshotVersion {
		return corrupt("snapshot version %d, this build reads %d", v, snapshotVersion)
	}
	st.revision = d.uvarint()
	st.applied = d.uvarint()
	return d.fail("header")
}

func (d *snapDecoder) peers(st *state) error {
	n := d.uvarint()
	prev := ""
	for i := uint64(0); i < n && d.err == nil; i++ {
		id := d.str(MaxNameLen)
		addr := d.str(MaxLocationLen)
		if d.err != nil {
			break
		}
		if err := checkName(id); err != nil {
			return corrupt("peer %d id: %v", i, err)
		}
		if err := checkText(addr, MaxLocationLen); err != nil || addr == "" {
			return corrupt("peer %q address invalid", id)
		}
		if i > 0 && id <= prev {
			return corrupt("peer ids out of order at %q", id)
		}
		st.peers[id] = addr
		prev = id
	}
	return d.fail("peers")
}

func (d *snapDecoder) entries(st *state) error {
	n := d.uvarint()
	prev := ""
	// In key order; the trees are filled at the end (state.fill). The
	// count is untrusted: it only bounds the first allocation.
	recs := make([]*record, 0, min(n, 1<<20))
	for i := uint64(0); i < n && d.err == nil; i++ {
		shared := d.uvarint()
		rest := d.strBytes(MaxNameLen)
		if d.err != nil {
			break
		}
		if shared > uint64(len(prev)) || int(shared)+len(rest) > MaxNameLen {
			return corrupt("entry %d: bad key length", i)
		}
		key := prev[:shared] + string(rest)
		if i > 0 && key <= prev {
			return corrupt("entry %d: keys out of order", i)
		}
		if err := checkKey(key); err != nil {
			return corrupt("entry %d: invalid name key %q: %v", i, key, err)
		}
		rec, err := d.record(&st.in, key, st.revision)
		if err != nil {
			return fmt.Errorf("entry %q: %w", NameFromDBKey(key), err)
		}
		recs = append(recs, rec)
		st.stats.add(rec.meta)
		prev = key
	}
	if err := d.fail("entries"); err != nil {
		return err
	}
	st.fill(func(yield func(*record) bool) {
		for i := len(recs) - 1; i >= 0 && yield(recs[i]); i-- {
		}
	})
	return nil
}

// record reads the fields after the key of one entry.
func (d *snapDecoder) record(in *interner, key string, revision uint64) (*record, error) {
	rec := &record{key: key, meta: d.meta(in)}
	if d.err == nil && rec.meta.state == StateReserved {
		rec.reservedAt = d.varint()
	}
	rec.createRevision = d.uvarint()
	rec.modRevision = d.uvarint()
	if d.err != nil {
		return nil, d.fail("entry")
	}
	if rec.createRevision == 0 || rec.createRevision > rec.modRevision || rec.modRevision > revision {
		return nil, corrupt("revisions create %d mod %d outside 1..%d", rec.createRevision, rec.modRevision, revision)
	}
	return rec, nil
}

func (d *snapDecoder) history(st *state) error {
	n := d.uvarint()
	if d.err != nil {
		return d.fail("history")
	}
	if n > st.revision {
		return corrupt("%d events in history but revision is %d", n, st.revision)
	}
	skip := uint64(0)
	if n > uint64(st.hist.size) {
		skip = n - uint64(st.hist.size)
	}
	first := st.revision - n + 1
	for i := uint64(0); i < n; i++ {
		ev, err := d.event(&st.in, first+i)
		if err != nil {
			return fmt.Errorf("event %d: %w", first+i, err)
		}
		if i >= skip {
			st.hist.append(ev)
		}
	}
	return nil
}

func (d *snapDecoder) event(in *interner, rev uint64) (histEvent, error) {
	ev := histEvent{typ: EventType(d.byte()), op: Op(d.byte())}
	key := d.strBytes(MaxNameLen)
	if d.err == nil {
		ev.key = string(key)
	}
	ev.meta = d.historyMeta(in)
	ev.reservedAt = d.varint()
	ev.createRevision = d.uvarint()
	ev.modRevision = d.uvarint()
	switch d.byte() {
	case 0:
	case 1:
		ev.prev = d.historyMeta(in)
	default:
		d.setErr(corrupt("bad previous-entry flag"))
	}
	if d.err != nil {
		return histEvent{}, d.fail("event")
	}
	if err := checkKey(ev.key); err != nil {
		return histEvent{}, corrupt("invalid name key %q: %v", ev.key, err)
	}
	put := ev.typ == EventPut && ev.op >= OpReserve && ev.op <= OpDeactivate
	del := ev.typ == EventDelete && ev.op == OpDelete
	if !put && !del || (del && ev.prev == nil) {
		return histEvent{}, corrupt("type %d op %d", ev.typ, ev.op)
	}
	if ev.meta.state == StateActive && ev.reservedAt != 0 {
		return histEvent{}, corrupt("ACTIVE with a reservation time")
	}
	if ev.createRevision == 0 || ev.createRevision > ev.modRevision || (put && ev.modRevision != rev) || (del && ev.modRevision >= rev) {
		return histEvent{}, corrupt("revisions create %d mod %d at %d", ev.createRevision, ev.modRevision, rev)
	}
	return ev, nil
}

func (d *snapDecoder) trailer() error {
	if d.err != nil {
		return d.fail("trailer")
	}
	d.sum()
	want := d.crc
	got := d.bytes(4)
	if d.err != nil {
		return d.fail("trailer")
	}
	if binary.LittleEndian.Uint32(got) != want {
		return corrupt("checksum mismatch")
	}
	if d.fill(1) {
		return corrupt("trailing data after snapshot")
	}
	if !errors.Is(d.err, io.EOF) {
		return d.fail("trailer")
	}
	return nil
}

// snapBufSize holds the longest field (an ACL) with room to spare, so any
// single field can be read from the buffer in one piece.
const snapBufSize = 2*MaxACLLen + 1024

// snapDecoder is a buffered reader that checksums the bytes it has consumed.
// The first error sticks.
type snapDecoder struct {
	r         io.Reader
	buf       []byte
	pos       int // next unread byte in buf
	summed    int // buf[:summed] is included in crc
	crc       uint32
	err       error
	metas     []*meta // entry meta table, in definition order
	histMetas []*meta // history meta table
}

// fail turns the sticky error into the error of a section.
func (d *snapDecoder) fail(what string) error {
	switch {
	case d.err == nil:
		return nil
	case errors.Is(d.err, io.EOF), errors.Is(d.err, io.ErrUnexpectedEOF):
		return corrupt("%s: truncated", what)
	case errors.Is(d.err, ErrCorrupt):
		return fmt.Errorf("%s: %w", what, d.err)
	}
	return fmt.Errorf("%s: read: %w", what, d.err)
}

func (d *snapDecoder) sum() {
	d.crc = crc32.Update(d.crc, castagnoli, d.buf[d.summed:d.pos])
	d.summed = d.pos
}

// fill makes n unread bytes available and reports whether it could.
func (d *snapDecoder) fill(n int) bool {
	if len(d.buf)-d.pos >= n {
		return true
	}
	if d.err != nil {
		return false
	}
	d.sum()
	rest := copy(d.buf[:cap(d.buf)], d.buf[d.pos:])
	d.buf, d.pos, d.summed = d.buf[:rest], 0, 0
	for empty := 0; len(d.buf) < n; {
		m, err := d.r.Read(d.buf[len(d.buf):cap(d.buf)])
		d.buf = d.buf[:len(d.buf)+m]
		if m == 0 && err == nil {
			if empty++; empty > 100 {
				err = io.ErrNoProgress
			}
		}
		if err != nil {
			if len(d.buf) >= n {
				break
			}
			d.err = err
			return false
		}
	}
	return true
}

func (d *snapDecoder) byte() byte {
	if !d.fill(1) {
		return 0
	}
	b := d.buf[d.pos]
	d.pos++
	return b
}

// bytes returns the next n bytes, valid until the next read.
func (d *snapDecoder) bytes(n int) []byte {
	if n > cap(d.buf) {
		d.setErr(corrupt("field of %d bytes", n))
		return nil
	}
	if !d.fill(n) {
		return nil
	}
	b := d.buf[d.pos : d.pos+n]
	d.pos += n
	return b
}

func (d *snapDecoder) setErr(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *snapDecoder) uvarint() uint64 {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		b := d.byte()
		if d.err != nil {
			return 0
		}
		if shift == 63 && b > 1 {
			break
		}
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v
		}
	}
	d.setErr(corrupt("varint overflows 64 bits"))
	return 0
}

func (d *snapDecoder) varint() int64 {
	u := d.uvarint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

// strBytes reads a length-prefixed string of at most max bytes; the result
// is valid until the next read.
func (d *snapDecoder) strBytes(max int) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(max) {
		d.setErr(corrupt("string of %d bytes exceeds %d", n, max))
		return nil
	}
	return d.bytes(int(n))
}

// str reads a length-prefixed string of at most max bytes.
func (d *snapDecoder) str(max int) string { return string(d.strBytes(max)) }

// meta reads a meta reference, interning a new definition in in and
// counting one more live user either way.
func (d *snapDecoder) meta(in *interner) *meta {
	k := d.uvarint()
	if d.err != nil {
		return nil
	}
	if k == 0 {
		mk := d.metaKey()
		if d.err != nil {
			return nil
		}
		if in.metas[mk] != nil {
			d.setErr(corrupt("meta %d defined twice", len(d.metas)))
			return nil
		}
		m := in.acquire(mk, nil)
		d.metas = append(d.metas, m)
		return m
	}
	if k > uint64(len(d.metas)) {
		d.setErr(corrupt("meta reference %d beyond table of %d", k, len(d.metas)))
		return nil
	}
	m := d.metas[k-1]
	m.refs++
	return m
}

// checkMeta applies Validate's rules and the state invariants to a meta.
func checkMeta(k metaKey) error {
	for _, f := range []struct {
		s   string
		max int
	}{{k.loc, MaxLocationLen}, {k.acl, MaxACLLen}, {k.by, MaxIdentityLen}} {
		if err := checkText(f.s, f.max); err != nil {
			return err
		}
	}
	switch {
	case k.state == StateActive && k.by != "":
		return errors.New("ACTIVE with a reservation")
	case k.state == StateReserved && k.acl != "":
		return errors.New("RESERVED with an ACL")
	case k.state != StateActive && k.state != StateReserved:
		return fmt.Errorf("state %d", uint8(k.state))
	}
	return nil
}

// historyMeta reads a meta reference for an event. Events do not count as
// live users: a meta only history uses stays out of the interner (sharing
// the interned pointer when the value is live anyway).
func (d *snapDecoder) historyMeta(in *interner) *meta {
	k := d.uvarint()
	if d.err != nil {
		return nil
	}
	if k == 0 {
		mk := d.metaKey()
		if d.err != nil {
			return nil
		}
		m := in.metas[mk]
		if m == nil {
			m = &meta{metaKey: mk}
		}
		d.histMetas = append(d.histMetas, m)
		return m
	}
	if k > uint64(len(d.histMetas)) {
		d.setErr(corrupt("history meta reference %d beyond table of %d", k, len(d.histMetas)))
		return nil
	}
	return d.histMetas[k-1]
}

// metaKey reads and checks the body of a meta definition.
func (d *snapDecoder) metaKey() metaKey {
	var mk metaKey
	mk.state = State(d.byte())
	mk.loc = d.str(MaxLocationLen)
	mk.acl = d.str(MaxACLLen)
	mk.by = d.str(MaxIdentityLen)
	if d.err != nil {
		return metaKey{}
	}
	if err := checkMeta(mk); err != nil {
		d.setErr(corrupt("meta: %v", err))
		return metaKey{}
	}
	return mk
}
