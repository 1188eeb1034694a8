package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// raft-wal's segment layout (v0.4.0), as far as checkWALTail reads it: a
// 32-byte file header, then 8-byte aligned frames. A frame header is a type
// byte, three zero bytes and a little-endian uint32: the payload length of
// an entry or index frame, or, for a commit frame, the CRC-32C of every
// byte since the end of the previous commit frame (since the start of the
// file for the first). Segment files are preallocated with zeros.
const (
	walFileHeaderLen  = 32
	walFrameHeaderLen = 8
	walFrameEntry     = 1
	walFrameIndex     = 2
	walFrameCommit    = 3
	// walResyncWindow bounds how many later commit-frame candidates each
	// batch start is tried against.
	walResyncWindow = 16
)

// checkWALTail finds damage that raft-wal would silently treat as a torn
// write. On open raft-wal reads the tail segment frame by frame and stops
// at the first frame header that does not parse, assuming the rest is an
// unfinished last write; a flipped bit in an older frame header therefore
// drops every entry after it, acknowledged ones included, without a word.
// A torn write can only spoil the last batch, so if a complete batch — one
// whose commit frame's CRC-32C matches the bytes since the previous commit
// — lies beyond the point where the frames stop parsing, the segment is
// damaged, and the start is refused naming it.
func checkWALTail(walDir string) error {
	seg := walTailSegment(walDir)
	if seg == "" {
		return nil
	}
	b, err := os.ReadFile(seg)
	if err != nil {
		return fmt.Errorf("cluster: raft wal segment %s: %w", seg, err)
	}
	end := len(bytes.TrimRight(b, "\x00"))
	stop, batchStart := walFrames(b, end)
	if stop >= end {
		return nil // every frame parsed up to the zeros
	}
	starts := []int{batchStart}
	var commits []int
	for c := (stop/walFrameHeaderLen + 1) * walFrameHeaderLen; c+walFrameHeaderLen <= end; c += walFrameHeaderLen {
		if b[c] == walFrameCommit && b[c+1] == 0 && b[c+2] == 0 && b[c+3] == 0 {
			commits = append(commits, c)
			starts = append(starts, c+walFrameHeaderLen)
		}
	}
	for _, s := range starts {
		tried := 0
		for _, c := range commits {
			if c < s {
				continue
			}
			if tried++; tried > walResyncWindow {
				break
			}
			if crc32.Checksum(b[s:c], castagnoli) == binary.LittleEndian.Uint32(b[c+4:]) {
				return fmt.Errorf("cluster: raft wal segment %s is damaged: the frame at offset %d does not parse, but a complete committed batch follows it (offsets %d..%d), so this is not an unfinished last write; raft-wal would drop every entry after offset %d (refusing to start)",
					seg, stop, s, c+walFrameHeaderLen, stop)
			}
		}
	}
	return nil
}

// walFrames walks the frames of a segment as raft-wal's recovery does and
// returns the offset where parsing stops and the start of the batch after
// the last commit frame before it.
func walFrames(b []byte, end int) (stop, batchStart int) {
	off := walFileHeaderLen
	for off+walFrameHeaderLen <= len(b) && off < end {
		h := b[off : off+walFrameHeaderLen]
		switch h[0] {
		case walFrameEntry, walFrameIndex:
			n := int(binary.LittleEndian.Uint32(h[4:]))
			next := off + walFrameHeaderLen + n + (walFrameHeaderLen-n%walFrameHeaderLen)%walFrameHeaderLen
			if next > len(b) || next < off {
				return off, batchStart
			}
			off = next
		case walFrameCommit:
			off += walFrameHeaderLen
			batchStart = off
		default:
			return off, batchStart
		}
	}
	return off, batchStart
}

// walTailSegment is the segment file with the highest base index (raft-wal
// names them "<base index>-<id>.wal"), or "" if there is none.
func walTailSegment(walDir string) string {
	entries, _ := os.ReadDir(walDir)
	tail, tailBase := "", uint64(0)
	for _, e := range entries {
		name := e.Name()
		base, _, ok := strings.Cut(strings.TrimSuffix(name, ".wal"), "-")
		if !strings.HasSuffix(name, ".wal") || !ok {
			continue
		}
		n, err := strconv.ParseUint(base, 10, 64)
		if err != nil || (tail != "" && n < tailBase) {
			continue
		}
		tail, tailBase = filepath.Join(walDir, name), n
	}
	return tail
}
