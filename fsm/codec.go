package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Wire versions of the log entry and result encodings. A decoder rejects any
// other version rather than guessing, so a mixed-version cluster fails loudly.
const (
	// commandsV1 is the unchecked encoding written before checksums; it is
	// still decoded so existing logs replay.
	commandsV1      = 1
	commandsVersion = 2
	resultsVersion  = 1
)

// ErrCorrupt is wrapped by every decoding error of DecodeCommands,
// DecodeResults and Restore.
var ErrCorrupt = errors.New("fsm: corrupt encoding")

// EncodeCommands encodes the commands of one log entry.
//
// Layout (version 2): version byte, CRC-32C (Castagnoli, big endian) of
// everything after it, uvarint count, then per command: op byte, name,
// location, ACL, identity, bound server (each uvarint length + bytes), the
// time as a zig-zag varint and IfRevision as a uvarint. The checksum makes a
// damaged entry an error instead of a different command (docs/integrity.md).
func EncodeCommands(cmds []Command) []byte {
	n := 5 + binary.MaxVarintLen64
	for _, c := range cmds {
		n += 1 + 5*binary.MaxVarintLen64 + len(c.Name) + len(c.Location) + len(c.ACL) + len(c.Identity) + len(c.Bound) + 2*binary.MaxVarintLen64
	}
	b := make([]byte, 5, n)
	b[0] = commandsVersion
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		b = append(b, byte(c.Op))
		b = appendString(b, c.Name)
		b = appendString(b, c.Location)
		b = appendString(b, c.ACL)
		b = appendString(b, c.Identity)
		b = appendString(b, c.Bound)
		b = binary.AppendVarint(b, c.Time)
		b = binary.AppendUvarint(b, c.IfRevision)
	}
	binary.BigEndian.PutUint32(b[1:5], crc32.Checksum(b[5:], castagnoli))
	return b
}

// minCommandLen is the smallest encoded command: op byte, four empty
// strings and a one-byte time. It bounds the count a decoder believes.
const minCommandLen = 6

// DecodeCommands decodes what EncodeCommands wrote (and version 1, which
// had no checksum, bound server or IfRevision). It checks structure and the
// checksum only (Apply validates content), and rejects a checksum mismatch,
// truncated input, trailing bytes and unknown versions with an error
// wrapping ErrCorrupt.
func DecodeCommands(b []byte) ([]Command, error) {
	d := decoder{b: b}
	v := d.byte()
	switch {
	case d.err != nil:
		return nil, fmt.Errorf("%w: commands: %w", ErrCorrupt, d.err)
	case v == commandsVersion:
		if len(d.b) < 4 {
			return nil, fmt.Errorf("%w: commands: %w", ErrCorrupt, errTruncated)
		}
		want := binary.BigEndian.Uint32(d.b)
		d.b = d.b[4:]
		if got := crc32.Checksum(d.b, castagnoli); got != want {
			return nil, fmt.Errorf("%w: commands checksum %08x, want %08x", ErrCorrupt, got, want)
		}
	case v != commandsV1:
		return nil, fmt.Errorf("%w: commands version %d, want %d", ErrCorrupt, v, commandsVersion)
	}
	n := d.count(minCommandLen)
	if d.err != nil {
		return nil, fmt.Errorf("%w: commands: %w", ErrCorrupt, d.err)
	}
	cmds := make([]Command, n)
	for i := range cmds {
		c := &cmds[i]
		c.Op = Op(d.byte())
		c.Name = d.string()
		c.Location = d.string()
		c.ACL = d.string()
		c.Identity = d.string()
		if v == commandsVersion {
			c.Bound = d.string()
		}
		c.Time = d.varint()
		if v == commandsVersion {
			c.IfRevision = d.uvarint()
		}
		if d.err != nil {
			return nil, fmt.Errorf("%w: command %d: %w", ErrCorrupt, i, d.err)
		}
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after commands", ErrCorrupt, len(d.b))
	}
	return cmds, nil
}

// EncodeResults / DecodeResults carry results across the Peer.Apply RPC.
//
// Layout: version byte, uvarint count, then per result: code byte, uvarint
// revision.
func EncodeResults(rs []Result) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(rs)*(1+binary.MaxVarintLen64))
	b = append(b, resultsVersion)
	b = binary.AppendUvarint(b, uint64(len(rs)))
	for _, r := range rs {
		b = append(b, byte(r.Code))
		b = binary.AppendUvarint(b, r.Revision)
	}
	return b
}

// DecodeResults decodes what EncodeResults wrote.
func DecodeResults(b []byte) ([]Result, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != resultsVersion {
		return nil, fmt.Errorf("%w: results version %d, want %d", ErrCorrupt, v, resultsVersion)
	}
	n := d.count(2)
	if d.err != nil {
		return nil, fmt.Errorf("%w: results: %w", ErrCorrupt, d.err)
	}
	rs := make([]Result, n)
	for i := range rs {
		rs[i].Code = Code(d.byte())
		rs[i].Revision = d.uvarint()
		if d.err != nil {
			return nil, fmt.Errorf("%w: result %d: %w", ErrCorrupt, i, d.err)
		}
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after results", ErrCorrupt, len(d.b))
	}
	return rs, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errTruncated = errors.New("truncated")

// decoder reads the in-memory encodings. The first error sticks; later reads
// return zero values, so callers check d.err once per record.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errTruncated
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadVarint(n)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errBadVarint(n)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an element count and rejects one that the remaining bytes
// cannot possibly hold, so garbage never makes us allocate a huge slice.
func (d *decoder) count(minElem int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)/minElem) {
		d.err = fmt.Errorf("count %d exceeds %d remaining bytes", n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errTruncated
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func errBadVarint(n int) error {
	if n == 0 {
		return errTruncated
	}
	return errors.New("varint overflows 64 bits")
}
