package cluster

import (
	"bytes"
	"testing"
)

// FuzzScanJournal feeds the journal reader arbitrary file contents and
// raft.db ends: it must never panic, what it accepts must be consecutive
// entries that read back alone from the intact prefix it reported, only
// zeros may follow a torn tail, and damage is skipped only when raft.db
// holds entries.
func FuzzScanJournal(f *testing.F) {
	two := appendJournalBatch(appendJournalBatch(nil, journalEntries(1, 3, 1)), journalEntries(4, 4, 2))
	f.Add([]byte{}, uint64(0))
	f.Add(two, uint64(0))
	f.Add(two[:len(two)-5], uint64(0))
	f.Add(append(bytes.Clone(two), make([]byte, 600)...), uint64(0))
	flipped := bytes.Clone(two)
	flipped[20] ^= 0xff
	f.Add(flipped, uint64(0))
	halfWiped := bytes.Clone(two)
	copy(halfWiped, make([]byte, journalHeaderSize+10))
	f.Add(halfWiped, uint64(4))
	f.Fuzz(func(t *testing.T, data []byte, stored uint64) {
		s, err := scanJournal(data, stored)
		if err != nil {
			return
		}
		if !isZero(data[s.end+s.torn:]) {
			t.Fatalf("intact %d + torn %d bytes of %d, followed by non-zero bytes", s.end, s.torn, len(data))
		}
		if s.wiped && stored == 0 {
			t.Fatal("skipped damage with nothing in raft.db")
		}
		for i := 1; i < len(s.logs); i++ {
			if s.logs[i].Index != s.logs[i-1].Index+1 {
				t.Fatalf("accepted entry %d after %d", s.logs[i].Index, s.logs[i-1].Index)
			}
		}
		again, err := scanJournal(data[:s.end], stored)
		if err != nil || again.torn != 0 || len(again.logs) != len(s.logs) {
			t.Fatalf("the intact prefix does not read back alone: %v, %d entries of %d", err, len(again.logs), len(s.logs))
		}
	})
}
