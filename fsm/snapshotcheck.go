package fsm

import (
	"bufio"
	"encoding/binary"
	"hash/crc32"
	"io"
)

// VerifySnapshot checks a snapshot stream written by Snapshot.WriteTo
// without building the state: the magic, the version and the CRC-32C
// trailer over every byte before it. It reads r to the end, through a small
// buffer, so a node can check each snapshot on disk at start in about the
// time it takes to read it (Restore checks everything else when the
// snapshot is used). Errors wrap ErrCorrupt, or are the reader's.
func VerifySnapshot(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	head := make([]byte, len(snapshotMagic)+1)
	if _, err := io.ReadFull(br, head); err != nil {
		return readErr("header", err)
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return corrupt("not an fsm snapshot (bad magic %q)", head[:len(snapshotMagic)])
	}
	if v := head[len(snapshotMagic)]; v != snapshotVersion {
		return corrupt("snapshot version %d, this build reads %d", v, snapshotVersion)
	}
	crc := crc32.Checksum(head, castagnoli)
	// The last four bytes are the trailer: buf[:4] holds back the four
	// most recent bytes until the next read or EOF shows they are not.
	buf := make([]byte, 4+64<<10)
	if _, err := io.ReadFull(br, buf[:4]); err != nil {
		return readErr("trailer", err)
	}
	for {
		k, err := br.Read(buf[4:])
		if k > 0 {
			crc = crc32.Update(crc, castagnoli, buf[:k])
			copy(buf[:4], buf[k:k+4])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return readErr("body", err)
		}
	}
	if got := binary.LittleEndian.Uint32(buf[:4]); got != crc {
		return corrupt("checksum mismatch (trailer %08x, computed %08x)", got, crc)
	}
	return nil
}

func readErr(what string, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return corrupt("%s: truncated", what)
	}
	return err
}
