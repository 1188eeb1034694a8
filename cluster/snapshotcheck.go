package cluster

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc64"
	"io"
	"os"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// snapshotMetaFile is meta.json of raft's FileSnapshotStore: raft's
// SnapshotMeta plus the CRC-64 (ECMA) of state.bin.
type snapshotMetaFile struct {
	raft.SnapshotMeta
	CRC []byte
}

func readSnapshotMeta(path string) (*snapshotMetaFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var m snapshotMetaFile
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s does not parse: %w", path, err)
	}
	if len(m.CRC) != crc64.Size {
		return nil, fmt.Errorf("%s holds no CRC-64 of the state", path)
	}
	return &m, nil
}

// verifySnapshotState reads state.bin once, checking the size and CRC-64
// raft recorded in meta.json, the adapter header's CRC-32C and the store
// format's CRC-32C trailer. At a million mailboxes that is about 13 MB.
func verifySnapshotState(path string, meta *snapshotMetaFile) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if fi.Size() != meta.Size {
		return fmt.Errorf("%s holds %d bytes, meta.json says %d", path, fi.Size(), meta.Size)
	}
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	r := io.TeeReader(bufio.NewReaderSize(f, 64<<10), h)
	if _, err := readSnapshotHeader(r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := fsm.VerifySnapshot(r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, meta.CRC) {
		return fmt.Errorf("%s: CRC-64 %x, meta.json says %x", path, got, meta.CRC)
	}
	return nil
}
