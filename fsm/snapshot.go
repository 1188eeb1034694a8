package fsm

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"unique"

	"github.com/google/btree"
)

// Snapshot format, version 1. All integers are varints; a "str" is a uvarint
// length and the bytes; a "ref" is an interned string: uvarint 0 followed by
// a str defines the next table slot, k > 0 names slot k-1. The table is
// shared by locations, ACLs and identities, so the few distinct values are
// written once and Restore interns each once.
//
//	magic "RKRYFSM\x00", version byte
//	revision, applied index
//	peers:   count, then per peer (ascending id): str id, str address
//	entries: count, then per entry in key order: uvarint bytes shared with
//	         the previous key, str rest of key, state byte, ref location,
//	         ACTIVE: ref ACL | RESERVED: ref reserved-by, varint reserved-at,
//	         uvarint create revision, uvarint mod revision
//	history: count, then per event (revisions revision-count+1 ..
//	         revision): type byte, op byte, str name, state byte,
//	         ref location, ref ACL, ref reserved-by, varint reserved-at,
//	         uvarint create revision, uvarint mod revision, ref prev location
//	trailer: CRC-32C (Castagnoli) of every byte above, 4 bytes little endian
const (
	snapshotMagic   = "RKRYFSM\x00"
	snapshotVersion = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Snapshot is a point-in-time copy of the store. Its WriteTo may run while
// the store keeps applying, and may be called more than once.
type Snapshot struct {
	tree     *btree.BTreeG[*record]
	revision uint64
	applied  uint64
	peers    []peer
	events   []Event // shared with the store's history; read only
}

type peer struct{ id, addr string }

// Revision is the revision the snapshot was taken at.
func (sn *Snapshot) Revision() uint64 { return sn.revision }

// AppliedIndex is the raft log index of the last entry the snapshot holds.
func (sn *Snapshot) AppliedIndex() uint64 { return sn.applied }

// Len is the number of entries in the snapshot.
func (sn *Snapshot) Len() int { return sn.tree.Len() }

// WriteTo streams the snapshot to w through a small buffer; memory use does
// not grow with the number of entries beyond the table of distinct
// locations, ACLs and identities. Equal states write equal bytes.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &crcWriter{w: w}
	e := &snapEncoder{w: bufio.NewWriterSize(cw, 64<<10), refs: map[unique.Handle[string]]uint64{}}
	e.raw(snapshotMagic)
	e.byte(snapshotVersion)
	e.uvarint(sn.revision)
	e.uvarint(sn.applied)

	e.uvarint(uint64(len(sn.peers)))
	for _, p := range sn.peers {
		e.str(p.id)
		e.str(p.addr)
	}

	e.uvarint(uint64(sn.tree.Len()))
	prev := ""
	sn.tree.Ascend(func(r *record) bool {
		shared := commonPrefixLen(prev, r.key)
		e.uvarint(uint64(shared))
		e.str(r.key[shared:])
		e.byte(byte(r.state()))
		e.ref(r.loc)
		if r.res == nil {
			e.ref(r.acl)
		} else {
			e.ref(r.res.by)
			e.varint(r.res.at)
		}
		e.uvarint(r.createRevision)
		e.uvarint(r.modRevision)
		prev = r.key
		return e.err == nil
	})

	e.uvarint(uint64(len(sn.events)))
	for i := range sn.events {
		ev := &sn.events[i]
		e.byte(byte(ev.Type))
		e.byte(byte(ev.Op))
		e.str(ev.Entry.Name)
		e.byte(byte(ev.Entry.State))
		e.ref(intern(ev.Entry.Location))
		e.ref(intern(ev.Entry.ACL))
		e.ref(intern(ev.Entry.ReservedBy))
		e.varint(ev.Entry.ReservedAt)
		e.uvarint(ev.Entry.CreateRevision)
		e.uvarint(ev.Entry.ModRevision)
		e.ref(intern(ev.PrevLocation))
	}
	if e.err == nil {
		e.err = e.w.Flush()
	}
	if e.err != nil {
		return cw.n, fmt.Errorf("fsm: write snapshot: %w", e.err)
	}
	var trailer [4]byte
	binary.LittleEndian.PutUint32(trailer[:], cw.crc)
	n, err := w.Write(trailer[:])
	cw.n += int64(n)
	if err != nil {
		return cw.n, fmt.Errorf("fsm: write snapshot: %w", err)
	}
	return cw.n, nil
}

func commonPrefixLen(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// crcWriter checksums and counts what passes through it.
type crcWriter struct {
	w   io.Writer
	crc uint32
	n   int64
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	c.n += int64(n)
	return n, err
}

// snapEncoder writes the snapshot fields; the first error sticks.
type snapEncoder struct {
	w       *bufio.Writer
	err     error
	scratch [binary.MaxVarintLen64]byte
	refs    map[unique.Handle[string]]uint64
}

func (e *snapEncoder) raw(s string) {
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
	}
}

func (e *snapEncoder) byte(b byte) {
	if e.err == nil {
		e.err = e.w.WriteByte(b)
	}
}

func (e *snapEncoder) uvarint(v uint64) {
	if e.err == nil {
		_, e.err = e.w.Write(binary.AppendUvarint(e.scratch[:0], v))
	}
}

func (e *snapEncoder) varint(v int64) {
	if e.err == nil {
		_, e.err = e.w.Write(binary.AppendVarint(e.scratch[:0], v))
	}
}

func (e *snapEncoder) str(s string) {
	e.uvarint(uint64(len(s)))
	e.raw(s)
}

func (e *snapEncoder) ref(h unique.Handle[string]) {
	if h == (unique.Handle[string]{}) {
		h = intern("")
	}
	if id, ok := e.refs[h]; ok {
		e.uvarint(id + 1)
		return
	}
	e.refs[h] = uint64(len(e.refs))
	e.uvarint(0)
	e.str(h.Value())
}
