package cluster

import (
	"bytes"
	"testing"
)

// FuzzScanJournal feeds the journal reader arbitrary file contents: it must
// never panic, and what it accepts must be consecutive entries that
// re-encode to the intact prefix it reported.
func FuzzScanJournal(f *testing.F) {
	two := appendJournalBatch(appendJournalBatch(nil, journalEntries(1, 3, 1)), journalEntries(4, 4, 2))
	f.Add([]byte{})
	f.Add(two)
	f.Add(two[:len(two)-5])
	f.Add(append(bytes.Clone(two), make([]byte, 600)...))
	flipped := bytes.Clone(two)
	flipped[20] ^= 0xff
	f.Add(flipped)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := scanJournal(data)
		if err != nil {
			return
		}
		if s.end+s.torn != int64(len(data)) {
			t.Fatalf("intact %d + torn %d bytes != %d", s.end, s.torn, len(data))
		}
		for i := 1; i < len(s.logs); i++ {
			if s.logs[i].Index != s.logs[i-1].Index+1 {
				t.Fatalf("accepted entry %d after %d", s.logs[i].Index, s.logs[i-1].Index)
			}
		}
		again, err := scanJournal(data[:s.end])
		if err != nil || again.torn != 0 || len(again.logs) != len(s.logs) {
			t.Fatalf("the intact prefix does not read back alone: %v, %d entries of %d", err, len(again.logs), len(s.logs))
		}
	})
}
