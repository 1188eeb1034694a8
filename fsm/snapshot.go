package fsm

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/google/btree"
)

// Snapshot format, version 1. All integers are varints; a "str" is a uvarint
// length and the bytes. A "meta" (state, location, ACL, reserved-by) is
// written once per distinct value: uvarint 0, a state byte and three strs
// define the next table slot; k > 0 names slot k-1. Entries and history
// have a table each. Restore therefore interns each distinct value once,
// and the snapshot stays small.
//
//	magic "RKRYFSM\x00", version byte
//	revision, applied index
//	peers:   count, then per peer (ascending id): str id, str address
//	entries: count, then per entry in key order: uvarint bytes shared with
//	         the previous key, str rest of key, meta, (RESERVED only:
//	         varint reserved-at), uvarint create revision, uvarint mod
//	         revision
//	history: count, then per event (revisions revision-count+1 ..
//	         revision): type byte, op byte, str key, meta, varint
//	         reserved-at, uvarint create revision, uvarint mod revision,
//	         byte 1 and the meta before the change, or byte 0 if absent
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
	events   histView // shares the store's history chunks; read only
	metas    int      // distinct metas in the tree, to size the tables
	// compactOnto, when set, is the store whose trees a successful
	// WriteTo rebuilds dense from this snapshot (Store.compact).
	compactOnto *Store
	restores    uint64
}

type peer struct{ id, addr string }

// Revision is the revision the snapshot was taken at.
func (sn *Snapshot) Revision() uint64 { return sn.revision }

// AppliedIndex is the raft log index of the last entry the snapshot holds.
func (sn *Snapshot) AppliedIndex() uint64 { return sn.applied }

// Len is the number of entries in the snapshot.
func (sn *Snapshot) Len() int { return sn.tree.Len() }

// WriteTo streams the snapshot to w through a 64 KiB buffer; the only
// memory that grows with the state is a table of about 20 bytes per
// distinct (state, location, ACL, identity) value. Equal states write equal
// bytes.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &crcWriter{w: w}
	e := &snapEncoder{
		w:        bufio.NewWriterSize(cw, 64<<10),
		metaPtrs: make(map[*meta]uint64, sn.metas),
		histMeta: map[metaKey]uint64{},
	}
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
		e.liveMeta(r.meta)
		if r.meta.state == StateReserved {
			e.varint(r.reservedAt)
		}
		e.uvarint(r.createRevision)
		e.uvarint(r.modRevision)
		prev = r.key
		return e.err == nil
	})

	e.uvarint(uint64(sn.events.len()))
	for i := 0; i < sn.events.len(); i++ {
		ev := sn.events.at(i)
		e.byte(byte(ev.typ))
		e.byte(byte(ev.op))
		e.str(ev.key)
		e.histMetaRef(ev.meta)
		e.varint(ev.reservedAt)
		e.uvarint(ev.createRevision)
		e.uvarint(ev.modRevision)
		if ev.prev == nil {
			e.byte(0)
		} else {
			e.byte(1)
			e.histMetaRef(ev.prev)
		}
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
	if sn.compactOnto != nil {
		sn.compactOnto.compact(sn)
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
	// The meta table is keyed by value so equal states write equal
	// bytes (history may hold a released and a re-created meta of equal
	// value); the pointer map makes the common repeat a cheap lookup.
	metaPtrs map[*meta]uint64
	histMeta map[metaKey]uint64
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

// liveMeta writes a meta of the tree. The interner holds one meta per
// value, so the pointer identifies the value, and the table costs about 20
// bytes per distinct value while the snapshot is written.
func (e *snapEncoder) liveMeta(m *meta) {
	if id, ok := e.metaPtrs[m]; ok {
		e.uvarint(id + 1)
		return
	}
	e.metaPtrs[m] = uint64(len(e.metaPtrs))
	e.defineMeta(m)
}

// histMetaRef writes a meta of the history in a table of its own, keyed by
// value: the history may hold a released and a re-created meta of equal
// value, and equal states must write equal bytes. It is bounded by the
// history size.
func (e *snapEncoder) histMetaRef(m *meta) {
	if id, ok := e.histMeta[m.metaKey]; ok {
		e.uvarint(id + 1)
		return
	}
	e.histMeta[m.metaKey] = uint64(len(e.histMeta))
	e.defineMeta(m)
}

// defineMeta writes a meta table definition.
func (e *snapEncoder) defineMeta(m *meta) {
	e.uvarint(0)
	e.byte(byte(m.state))
	e.str(m.loc)
	e.str(m.acl)
	e.str(m.by)
}
