package floor

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"syscall"
)

// diskSize is the log file's size: allocated and zero-filled up front, so
// that every append overwrites written blocks and fdatasync syncs data
// only, as Rookery's raft.journal does (docs/log-journal.md).
const diskSize = 64 << 20

// headerSize is a record's header: sequence, length, CRC-32C.
const headerSize = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// disk appends records to a preallocated file, wrapping at its end.
// Records are never read back: the floor keeps no state across restarts.
type disk struct {
	f   *os.File
	off int64
	buf []byte
}

// openDisk creates path, writes diskSize zero bytes and syncs them.
func openDisk(path string) (*disk, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < diskSize; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros, off); err != nil {
			f.Close()
			return nil, fmt.Errorf("floor: allocate %s: %w", path, err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("floor: sync %s: %w", path, err)
	}
	return &disk{f: f}, nil
}

// append writes one record holding payloads and syncs it.
func (d *disk) append(seq uint64, payloads ...[]byte) error {
	n := headerSize
	for _, p := range payloads {
		n += len(p)
	}
	if n > diskSize {
		return fmt.Errorf("floor: record of %d bytes exceeds the log", n)
	}
	d.buf = append(d.buf[:0], make([]byte, headerSize)...)
	for _, p := range payloads {
		d.buf = append(d.buf, p...)
	}
	binary.BigEndian.PutUint64(d.buf[0:], seq)
	binary.BigEndian.PutUint32(d.buf[8:], uint32(n-headerSize))
	binary.BigEndian.PutUint32(d.buf[12:], crc32.Checksum(d.buf[headerSize:], castagnoli))
	if d.off+int64(n) > diskSize {
		d.off = 0
	}
	if _, err := d.f.WriteAt(d.buf, d.off); err != nil {
		return fmt.Errorf("floor: write: %w", err)
	}
	d.off += int64(n)
	if err := syscall.Fdatasync(int(d.f.Fd())); err != nil {
		return fmt.Errorf("floor: fdatasync: %w", err)
	}
	return nil
}

func (d *disk) close() error { return d.f.Close() }
