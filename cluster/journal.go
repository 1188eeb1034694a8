package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/hashicorp/raft"
)

// The append journal's file format (docs/log-journal.md). The journal is a
// sequence of batches, one per StoreLogs call, each written with a single
// write and made durable with a single fdatasync:
//
//	header  magic "RKJ1" | payload length u32 | payload CRC-32C u32 | header CRC-32C u32 (of the 12 bytes before it)
//	payload count u32, then per entry:
//	        index u64 | term u64 | type u8 | appended-at Unix ns i64 (0: unset) |
//	        data length u32 | data | extensions length u32 | extensions
//
// All integers are big-endian.
const (
	journalMagic      = "RKJ1"
	journalHeaderSize = 16
	// journalMaxPayload bounds a batch's length field, so a damaged header
	// cannot make the reader allocate gigabytes. raft sends at most
	// MaxAppendEntries entries per call, and an entry is at most a bulk
	// import's 4,096 commands.
	journalMaxPayload = 1 << 30
	// journalSector is the unit a torn write leaves unwritten: a sector the
	// disk did not write before the crash reads back as zeros.
	journalSector = 512
	// journalEntryFixed is the size of an entry without its data and
	// extensions.
	journalEntryFixed = 8 + 8 + 1 + 8 + 4 + 4
)

var journalCRC = crc32.MakeTable(crc32.Castagnoli)

// errJournalCorrupt marks a journal that holds damage a crash cannot
// explain: a bad batch followed by intact ones, or a bad batch with no
// sector left unwritten. Replaying past it would lose entries silently.
var errJournalCorrupt = errors.New("journal is damaged")

// appendJournalBatch appends the encoding of one batch of entries to buf.
func appendJournalBatch(buf []byte, logs []*raft.Log) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, journalHeaderSize)...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(logs)))
	for _, l := range logs {
		buf = binary.BigEndian.AppendUint64(buf, l.Index)
		buf = binary.BigEndian.AppendUint64(buf, l.Term)
		buf = append(buf, byte(l.Type))
		var at int64
		if !l.AppendedAt.IsZero() {
			at = l.AppendedAt.UnixNano()
		}
		buf = binary.BigEndian.AppendUint64(buf, uint64(at))
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(l.Data)))
		buf = append(buf, l.Data...)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(l.Extensions)))
		buf = append(buf, l.Extensions...)
	}
	payload := buf[start+journalHeaderSize:]
	h := buf[start : start+journalHeaderSize]
	copy(h, journalMagic)
	binary.BigEndian.PutUint32(h[4:], uint32(len(payload)))
	binary.BigEndian.PutUint32(h[8:], crc32.Checksum(payload, journalCRC))
	binary.BigEndian.PutUint32(h[12:], crc32.Checksum(h[:12], journalCRC))
	return buf
}

// journalScan is what reading a journal found.
type journalScan struct {
	logs []*raft.Log
	// end is the offset after the last intact batch. What follows is
	// the journal's preallocated zeros, after a torn tail if there is
	// one.
	end int64
	// torn is the length of that tail in bytes, up to its last non-zero
	// byte (0: none).
	torn int64
	// wiped is set when damage was skipped because the batches after it
	// hold only entries raft.db already has: a crash interrupted the
	// wipe that follows a checkpoint.
	wiped bool
}

// scanJournal decodes every batch of a journal file's contents; stored is
// raft.db's last index. A damaged batch is accepted in two cases, and any
// other damage is errJournalCorrupt:
//   - it is the tail a crash tore off: nothing intact follows it, and it
//     is short or has a sector of zeros;
//   - an intact batch follows it whose entries raft.db already holds (a
//     crash during the wipe after a checkpoint leaves zeroed stretches
//     between such batches); the damaged entries come before those, so
//     raft.db holds them too.
//
// Entries must follow each other without gaps.
func scanJournal(data []byte, stored uint64) (journalScan, error) {
	var s journalScan
	off := 0
	for off < len(data) {
		payload, ok := journalBatchAt(data, off)
		if !ok {
			next, err := skipDamage(data, off, s.logs, stored)
			if err != nil {
				return journalScan{}, err
			}
			if next < 0 {
				break
			}
			s.logs, s.wiped, off = nil, true, next
			continue
		}
		logs, err := decodeJournalPayload(payload)
		if err != nil {
			return journalScan{}, fmt.Errorf("%w: batch at offset %d: %w", errJournalCorrupt, off, err)
		}
		if n := len(s.logs); n > 0 && len(logs) > 0 && logs[0].Index != s.logs[n-1].Index+1 {
			return journalScan{}, fmt.Errorf("%w: batch at offset %d starts at entry %d after entry %d", errJournalCorrupt, off, logs[0].Index, s.logs[n-1].Index)
		}
		s.logs = append(s.logs, logs...)
		off += journalHeaderSize + len(payload)
	}
	s.end = int64(off)
	s.torn = int64(len(bytes.TrimRight(data[off:], "\x00")))
	if s.torn > 0 && !tornAt(data, off) {
		return journalScan{}, fmt.Errorf("%w: batch at offset %d fails its checksum and was written in full", errJournalCorrupt, off)
	}
	return s, nil
}

// skipDamage finds the intact batch after the damaged one at off, or -1
// when none follows (the damage may be a torn tail). Skipping to it is
// allowed only when it and every entry before it (before, then the
// damaged ones) are in raft.db: dropping them loses nothing.
func skipDamage(data []byte, off int, before []*raft.Log, stored uint64) (int, error) {
	next := -1
	for i := off + 1; i+journalHeaderSize <= len(data); i++ {
		k := bytes.IndexByte(data[i:len(data)-journalHeaderSize+1], journalMagic[0])
		if k < 0 {
			break
		}
		i += k
		if _, ok := journalBatchAt(data, i); ok {
			next = i
			break
		}
	}
	if next < 0 {
		return -1, nil
	}
	payload, _ := journalBatchAt(data, next)
	logs, err := decodeJournalPayload(payload)
	if err == nil && stored > 0 && allStored(before, stored) && allStored(logs, stored) {
		return next, nil
	}
	return 0, fmt.Errorf("%w: bad batch at offset %d is followed by an intact one at offset %d", errJournalCorrupt, off, next)
}

func allStored(logs []*raft.Log, stored uint64) bool {
	for _, l := range logs {
		if l.Index > stored {
			return false
		}
	}
	return true
}

// journalHeaderAt returns the payload length the batch header at off
// declares, when the header is whole and intact.
func journalHeaderAt(data []byte, off int) (uint32, bool) {
	if len(data)-off < journalHeaderSize {
		return 0, false
	}
	h := data[off : off+journalHeaderSize]
	if string(h[:4]) != journalMagic || binary.BigEndian.Uint32(h[12:]) != crc32.Checksum(h[:12], journalCRC) {
		return 0, false
	}
	return binary.BigEndian.Uint32(h[4:]), true
}

// journalBatchAt returns the payload of the batch at off when its header
// and payload are intact.
func journalBatchAt(data []byte, off int) ([]byte, bool) {
	n, ok := journalHeaderAt(data, off)
	if !ok || n > journalMaxPayload || uint64(len(data)-off-journalHeaderSize) < uint64(n) {
		return nil, false
	}
	payload := data[off+journalHeaderSize : off+journalHeaderSize+int(n)]
	if crc32.Checksum(payload, journalCRC) != binary.BigEndian.Uint32(data[off+8:]) {
		return nil, false
	}
	return payload, true
}

// tornAt decides whether the damaged batch at off, the last one, is what
// a crash during its append leaves. Every earlier append was synced
// before the next began, so only the last can be torn. A torn append is
// cut short, or has sectors the disk never wrote, which read back as the
// zeros the journal was filled with; a batch that is complete, has no
// such sector and still fails its checksum was damaged after it was
// written. Only the batch's own extent counts (its header's, when the
// header itself is damaged): the zeros after it are free space. A damaged
// header whose checksum field is zero was cut short too: an intact one
// has a zero checksum once in 2^32.
func tornAt(data []byte, off int) bool {
	if len(data)-off < journalHeaderSize {
		return true
	}
	extent := off + journalHeaderSize
	if n, ok := journalHeaderAt(data, off); ok {
		if uint64(len(data)-extent) < uint64(n) {
			return true
		}
		extent += int(n)
	} else if isZero(data[extent-4 : extent]) {
		return true
	}
	return hasZeroSector(data[:extent], off)
}

// hasZeroSector reports whether some sector of data from off on (the
// first one counted from off) holds only zeros.
func hasZeroSector(data []byte, off int) bool {
	for s := off - off%journalSector; s < len(data); s += journalSector {
		lo, hi := max(s, off), min(s+journalSector, len(data))
		if lo < hi && isZero(data[lo:hi]) {
			return true
		}
	}
	return false
}

func isZero(b []byte) bool {
	return len(bytes.TrimLeft(b, "\x00")) == 0
}

// decodeJournalPayload decodes the entries of one intact batch.
func decodeJournalPayload(p []byte) ([]*raft.Log, error) {
	if len(p) < 4 {
		return nil, errors.New("payload shorter than its count")
	}
	count := binary.BigEndian.Uint32(p)
	p = p[4:]
	if uint64(count) > uint64(len(p)/journalEntryFixed) {
		return nil, fmt.Errorf("count %d does not fit in %d bytes", count, len(p))
	}
	logs := make([]*raft.Log, 0, count)
	for i := range count {
		l, rest, err := decodeJournalEntry(p)
		if err != nil {
			return nil, fmt.Errorf("entry %d of %d: %w", i+1, count, err)
		}
		if n := len(logs); n > 0 && l.Index != logs[n-1].Index+1 {
			return nil, fmt.Errorf("entry %d follows entry %d", l.Index, logs[n-1].Index)
		}
		logs = append(logs, l)
		p = rest
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%d bytes after the last entry", len(p))
	}
	return logs, nil
}

func decodeJournalEntry(p []byte) (*raft.Log, []byte, error) {
	if len(p) < journalEntryFixed {
		return nil, nil, errors.New("truncated")
	}
	l := &raft.Log{
		Index: binary.BigEndian.Uint64(p),
		Term:  binary.BigEndian.Uint64(p[8:]),
		Type:  raft.LogType(p[16]),
	}
	if at := int64(binary.BigEndian.Uint64(p[17:])); at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	p = p[25:]
	var ok bool
	if l.Data, p, ok = journalBytes(p); !ok {
		return nil, nil, errors.New("data length past the payload")
	}
	if l.Extensions, p, ok = journalBytes(p); !ok {
		return nil, nil, errors.New("extensions length past the payload")
	}
	return l, p, nil
}

// journalBytes splits a u32-length-prefixed byte string off p. An empty
// string decodes as nil, as raft-boltdb returns it.
func journalBytes(p []byte) (b, rest []byte, ok bool) {
	if len(p) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(p)
	p = p[4:]
	if uint64(n) > uint64(len(p)) {
		return nil, nil, false
	}
	if n == 0 {
		return nil, p, true
	}
	return bytes.Clone(p[:n]), p[n:], true
}
