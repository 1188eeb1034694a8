package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	wal "github.com/hashicorp/raft-wal"
	walfs "github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// repairWAL puts right, before raft-wal v0.4.0 opens dir, two segment
// states that version cannot recover from on its own. Both are left by
// ordinary operation plus a restart; neither loses an entry to repair.
// docs/raft-wal-repair.md gives the full argument.
//
//  1. A segment the metadata calls sealed but that has no index block
//     (IndexStart 0). raft-wal's tail truncation (raft's "clearing log
//     suffix" after a leader change) marks the open tail segment sealed
//     without writing its index (hashicorp/raft-wal#31). The running process
//     still reads it through the writer's in-memory index, but after any
//     restart every read of it fails with "sealed segment has no index
//     block" and raft panics replaying the log. Repair: copy the segment's
//     live entries, byte for byte, into a new segment file that raft-wal
//     seals properly, then switch the metadata to it in one transaction.
//  2. The tail segment sealed on disk (its last append wrote the index)
//     while the metadata still calls it open: the process died between the
//     sealing append and the rotation's metadata commit. raft-wal reopens
//     it as the tail and every append fails with ErrSealed. Repair: record
//     the seal in the metadata and add an empty tail after it.
//
// Only raft-wal's exported segment and metadata APIs are used; the metadata
// commit is the single switch point, so a crash during repair leaves the
// old state (and an orphan file raft-wal deletes on open) and the repair
// runs again.
func repairWAL(dir string, meta *metadb.BoltMetaDB, logger *slog.Logger) error {
	st, err := meta.Load(dir)
	if err != nil {
		return fmt.Errorf("load metadata: %w", err)
	}
	if len(st.Segments) == 0 {
		return nil
	}
	filer := segment.NewFiler(dir, walfs.New())
	changed := false
	for i := range st.Segments {
		si := st.Segments[i]
		switch {
		case !si.SealTime.IsZero() && si.IndexStart == 0:
			fixed, err := resealSegment(filer, si, st.NextSegmentID)
			if err != nil {
				return fmt.Errorf("segment %s (sealed without an index block): %w", segment.FileName(si), err)
			}
			logger.Warn("raft wal: resealed a segment left without an index block (raft-wal#31); no entry changed",
				"old", segment.FileName(si), "new", segment.FileName(fixed), "first", fixed.MinIndex, "last", fixed.MaxIndex)
			st.Segments[i] = fixed
			st.NextSegmentID++
			changed = true
		case si.SealTime.IsZero() && i == len(st.Segments)-1:
			sealed, next, err := recordTailSeal(filer, si, st.NextSegmentID)
			if err != nil {
				return fmt.Errorf("tail segment %s: %w", segment.FileName(si), err)
			}
			if next == nil {
				continue
			}
			logger.Warn("raft wal: the tail segment was sealed on disk but not in the metadata; recorded the seal and started a new tail",
				"segment", segment.FileName(sealed), "last", sealed.MaxIndex, "new_tail", segment.FileName(*next))
			st.Segments[i] = sealed
			st.Segments = append(st.Segments, *next)
			st.NextSegmentID++
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := meta.CommitState(st); err != nil {
		return fmt.Errorf("commit repaired metadata: %w", err)
	}
	return nil
}

// resealSegment writes si's live entries [MinIndex, MaxIndex] into a new,
// properly sealed segment with ID id and returns its metadata.
func resealSegment(filer *segment.Filer, si types.SegmentInfo, id uint64) (types.SegmentInfo, error) {
	if si.MaxIndex < si.MinIndex {
		return si, fmt.Errorf("metadata range [%d, %d] is empty", si.MinIndex, si.MaxIndex)
	}
	// RecoverTail rebuilds the index by scanning the frames, checking the
	// last batch's CRC; it writes nothing unless appended to.
	src, err := filer.RecoverTail(si)
	if err != nil {
		return si, fmt.Errorf("scan: %w", err)
	}
	defer src.Close()
	if last := src.LastIndex(); last < si.MaxIndex {
		return si, fmt.Errorf("file holds entries up to %d but the metadata says %d", last, si.MaxIndex)
	}
	entries := make([]types.LogEntry, 0, si.MaxIndex-si.MinIndex+1)
	for idx := si.MinIndex; idx <= si.MaxIndex; idx++ {
		buf, err := src.GetLog(idx)
		if err != nil {
			return si, fmt.Errorf("read entry %d: %w", idx, err)
		}
		entries = append(entries, types.LogEntry{Index: idx, Data: append([]byte(nil), buf.Bs...)})
		buf.Close()
	}

	fixed := si
	fixed.ID = id
	fixed.BaseIndex = si.MinIndex
	fixed.IndexStart = 0
	// A size limit below the data makes the one append below seal the
	// segment: the writer appends the index block in the same fsync.
	fixed.SizeLimit = 1
	// A file with this ID exists only if an earlier repair died before its
	// metadata commit; it is not referenced, so start it afresh.
	if err := filer.Delete(fixed.BaseIndex, fixed.ID); err != nil && !errors.Is(err, os.ErrNotExist) {
		return si, fmt.Errorf("remove unfinished repair: %w", err)
	}
	dst, err := filer.Create(fixed)
	if err != nil {
		return si, fmt.Errorf("create replacement: %w", err)
	}
	defer dst.Close()
	if err := dst.Append(entries); err != nil {
		return si, fmt.Errorf("write replacement: %w", err)
	}
	sealed, indexStart, err := dst.Sealed()
	if err != nil || !sealed {
		return si, fmt.Errorf("replacement did not seal (sealed=%v): %v", sealed, err)
	}
	fixed.IndexStart = indexStart
	fixed.SizeLimit = si.SizeLimit
	return fixed, nil
}

// recordTailSeal checks whether the open tail si was sealed on disk. If so
// it returns si marked sealed and the metadata of a new empty tail with ID
// id (raft-wal creates its file on open); otherwise next is nil.
func recordTailSeal(filer *segment.Filer, si types.SegmentInfo, id uint64) (sealedInfo types.SegmentInfo, next *types.SegmentInfo, err error) {
	w, err := filer.RecoverTail(si)
	if errors.Is(err, os.ErrNotExist) {
		return si, nil, nil // raft-wal creates a missing tail itself
	}
	if err != nil {
		return si, nil, nil // raft-wal reports it on open, with its own words
	}
	defer w.Close()
	sealed, indexStart, err := w.Sealed()
	if err != nil || !sealed {
		return si, nil, nil
	}
	last := w.LastIndex()
	if last < si.MinIndex {
		return si, nil, fmt.Errorf("sealed on disk but holds no live entry (last %d, first %d)", last, si.MinIndex)
	}
	sealedInfo = si
	sealedInfo.SealTime = time.Now()
	sealedInfo.MaxIndex = last
	sealedInfo.IndexStart = indexStart
	next = &types.SegmentInfo{
		ID:         id,
		BaseIndex:  last + 1,
		MinIndex:   last + 1,
		SizeLimit:  si.SizeLimit,
		Codec:      si.Codec,
		CreateTime: time.Now(),
	}
	if next.SizeLimit == 0 {
		next.SizeLimit = uint32(wal.DefaultSegmentSize)
	}
	return sealedInfo, next, nil
}
