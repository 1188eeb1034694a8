package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// journalFixture is raft.db and raft.journal in one directory, opened the
// way a node opens them.
type journalFixture struct {
	t    testing.TB
	dir  string
	bolt *raftboltdb.BoltStore
	j    *journalStore
}

func openJournalFixture(t testing.TB, dir string) (*journalFixture, error) {
	t.Helper()
	bolt, err := openCheckedBolt(filepath.Join(dir, raftDBName))
	if err != nil {
		t.Fatal(err)
	}
	j, err := openJournal(filepath.Join(dir, journalName), bolt, slog.New(slog.DiscardHandler))
	if err != nil {
		bolt.Close()
		return nil, err
	}
	return &journalFixture{t: t, dir: dir, bolt: bolt, j: j}, nil
}

func mustOpenJournalFixture(t testing.TB, dir string) *journalFixture {
	t.Helper()
	f, err := openJournalFixture(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.crash)
	return f
}

// crash drops the store as a killed process does: no checkpoint, the
// journal left as written.
func (f *journalFixture) crash() {
	if f.j.f != nil {
		f.j.f.Close()
		f.j.f = nil
	}
	f.bolt.Close()
}

// stop closes the store as a node stopping cleanly does.
func (f *journalFixture) stop() {
	f.t.Helper()
	if err := f.j.Close(); err != nil {
		f.t.Fatal(err)
	}
	f.bolt.Close()
}

func (f *journalFixture) store(first, last, term uint64) {
	f.t.Helper()
	if err := f.j.StoreLogs(journalEntries(first, last, term)); err != nil {
		f.t.Fatalf("StoreLogs(%d..%d): %v", first, last, err)
	}
}

// wantLog checks that entries first..last hold term and the data
// journalEntries gives them, and that the log ends at last.
func (f *journalFixture) wantLog(store raft.LogStore, first, last, term uint64) {
	f.t.Helper()
	f.wantEntries(store, first, last, term)
	if got, err := store.LastIndex(); err != nil || got != last {
		f.t.Fatalf("LastIndex = %d, %v; want %d", got, err, last)
	}
}

func (f *journalFixture) wantEntries(store raft.LogStore, first, last, term uint64) {
	f.t.Helper()
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := store.GetLog(i, &l); err != nil {
			f.t.Fatalf("GetLog(%d): %v", i, err)
		}
		want := journalEntries(i, i, term)[0]
		if l.Term != want.Term || !bytes.Equal(l.Data, want.Data) || !l.AppendedAt.Equal(want.AppendedAt) || l.Type != want.Type {
			f.t.Fatalf("entry %d = %+v, want %+v", i, l, want)
		}
	}
}

func journalEntries(first, last, term uint64) []*raft.Log {
	var logs []*raft.Log
	for i := first; i <= last; i++ {
		logs = append(logs, &raft.Log{
			Index:      i,
			Term:       term,
			Type:       raft.LogCommand,
			Data:       fmt.Appendf(nil, "entry %d of term %d", i, term),
			AppendedAt: time.Unix(1_700_000_000, int64(i)),
		})
	}
	return logs
}

func journalBytesOnDisk(t *testing.T, dir string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantWiped checks that raft.journal holds no batch: it is all zeros,
// journalGrow bytes of them, allocated for the next appends.
func wantWiped(t *testing.T, dir string) {
	t.Helper()
	b := journalBytesOnDisk(t, dir)
	if len(b) != journalGrow || !isZero(b) {
		t.Fatalf("raft.journal is %d bytes, zero: %v; want %d bytes of zeros", len(b), isZero(b), journalGrow)
	}
}

// An append is one write to raft.journal: raft.db does not see it (so
// bbolt's two syncs are not paid) until a checkpoint, yet a crash right
// after the append loses nothing.
func TestAnAppendGoesToTheJournalAndSurvivesACrash(t *testing.T) {
	dir := t.TempDir()
	f := mustOpenJournalFixture(t, dir)
	f.store(1, 3, 1)
	f.store(4, 4, 1)
	if last, err := f.bolt.LastIndex(); err != nil || last != 0 {
		t.Fatalf("raft.db LastIndex after two appends = %d, %v; want 0 (not yet checkpointed)", last, err)
	}
	if n := len(journalBytesOnDisk(t, dir)); n == 0 {
		t.Fatal("raft.journal is empty after two appends")
	}
	f.wantLog(f.j, 1, 4, 1)
	f.crash()

	g := mustOpenJournalFixture(t, dir)
	f.wantLog(g.bolt, 1, 4, 1) // replayed into raft.db on open
	g.wantLog(g.j, 1, 4, 1)
	wantWiped(t, dir)
}

// After every journalCheckpointEntries entries the journal is written into
// raft.db and emptied, so neither it nor the memory holding its entries
// grows without bound.
func TestTheJournalIsCheckpointedIntoRaftDB(t *testing.T) {
	dir := t.TempDir()
	f := mustOpenJournalFixture(t, dir)
	var checkpoints []int
	f.j.observe = func(_ time.Duration, entries int, err error) {
		if err != nil {
			t.Errorf("checkpoint: %v", err)
		}
		checkpoints = append(checkpoints, entries)
	}
	const batch = 100
	var last uint64
	for last+batch <= journalCheckpointEntries+batch {
		f.store(last+1, last+batch, 1)
		last += batch
	}
	boltLast, err := f.bolt.LastIndex()
	if err != nil || boltLast < journalCheckpointEntries {
		t.Fatalf("raft.db LastIndex = %d, %v; want at least %d after a checkpoint", boltLast, err, journalCheckpointEntries)
	}
	if len(f.j.pending) >= journalCheckpointEntries {
		t.Fatalf("%d entries pending after a checkpoint", len(f.j.pending))
	}
	if len(checkpoints) == 0 || checkpoints[0] < journalCheckpointEntries {
		t.Fatalf("checkpoints reported: %v, want the first with at least %d entries", checkpoints, journalCheckpointEntries)
	}
	b := journalBytesOnDisk(t, dir)
	if int64(len(b)) != f.j.capacity || len(b) != journalGrow || !isZero(b[f.j.size:]) {
		t.Fatalf("raft.journal is %d bytes (tracked %d, batches in the first %d), zeros after them: %v", len(b), f.j.capacity, f.j.size, isZero(b[f.j.size:]))
	}
	f.wantLog(f.j, 1, last, 1)
}

// Damage in the journal: a crash can only tear the last append, so that
// is dropped (it was never acknowledged); anything else refuses the start
// instead of silently losing the entries after it. Each case runs on the
// file as this store leaves it (zeros after the batches) and as an older
// rookeryd left it (the file ends with the last batch): the zeros after a
// batch are free space and never excuse damage inside it.
func TestJournalRecoveryDropsOnlyATornTail(t *testing.T) {
	tests := []struct {
		name     string
		damage   func(b []byte, lastBatch int) []byte
		wantLast uint64 // entries kept; 0 with wantErr
		wantErr  string
	}{
		{"intact", func(b []byte, _ int) []byte { return b }, 9, ""},
		{"last append cut short", func(b []byte, last int) []byte { return b[:last+(len(b)-last)/2] }, 6, ""},
		{"last append's header cut short", func(b []byte, last int) []byte { return b[:last+7] }, 6, ""},
		{"last append's final sector never written", func(b []byte, last int) []byte {
			return append(b[:len(b)-journalSector], make([]byte, journalSector)...)
		}, 6, ""},
		{"last append never written but the file grew", func(b []byte, last int) []byte {
			return append(b[:last], make([]byte, len(b)-last)...)
		}, 6, ""},
		{"byte flipped in the last append", func(b []byte, last int) []byte {
			b[last+journalHeaderSize+40] ^= 0x10
			return b
		}, 0, "written in full"},
		{"byte flipped in an earlier append", func(b []byte, _ int) []byte {
			b[journalHeaderSize+30] ^= 0x01
			return b
		}, 0, "followed by an intact one"},
		{"header of an earlier append zeroed", func(b []byte, _ int) []byte {
			copy(b[:journalHeaderSize], make([]byte, journalHeaderSize))
			return b
		}, 0, "followed by an intact one"},
	}
	layouts := []struct {
		name      string
		allocated bool
	}{{"allocated", true}, {"older rookeryd", false}}
	for _, tc := range tests {
		for _, layout := range layouts {
			t.Run(tc.name+"/"+layout.name, func(t *testing.T) {
				testJournalDamage(t, tc.damage, layout.allocated, tc.wantLast, tc.wantErr)
			})
		}
	}
}

func testJournalDamage(t *testing.T, damage func(b []byte, lastBatch int) []byte, allocated bool, wantLast uint64, wantErr string) {
	dir := t.TempDir()
	f := mustOpenJournalFixture(t, dir)
	f.store(1, 3, 1)
	f.store(4, 6, 1)
	lastBatch := int(f.j.size)
	// A big last append, so it spans sectors.
	big := journalEntries(7, 9, 1)
	for _, l := range big {
		l.Data = bytes.Repeat([]byte{'x'}, 700)
	}
	if err := f.j.StoreLogs(big); err != nil {
		t.Fatal(err)
	}
	size := int(f.j.size)
	f.crash()
	path := filepath.Join(dir, journalName)
	file := journalBytesOnDisk(t, dir)
	b := damage(bytes.Clone(file[:size]), lastBatch)
	if allocated && len(b) < len(file) {
		b = append(b, make([]byte, len(file)-len(b))...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := openJournalFixture(t, dir)
	if wantErr != "" {
		if err == nil {
			g.crash()
			t.Fatal("opened a damaged journal")
		}
		if !errors.Is(err, errJournalCorrupt) || !strings.Contains(err.Error(), wantErr) || !strings.Contains(err.Error(), path) {
			t.Fatalf("open: %v; want errJournalCorrupt naming %s and saying %q", err, path, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.crash)
	g.wantEntries(g.j, 1, 6, 1)
	if last, err := g.j.LastIndex(); err != nil || last != wantLast {
		t.Fatalf("LastIndex = %d, %v; want %d", last, err, wantLast)
	}
	if wantLast > 6 {
		var l raft.Log
		if err := g.j.GetLog(9, &l); err != nil || len(l.Data) != 700 {
			t.Fatalf("entry 9: %v, %d bytes", err, len(l.Data))
		}
	}
	wantWiped(t, dir)
}

// A checkpoint writes the journal's entries into raft.db, then wipes the
// journal with zeros. A crash during the wipe leaves zeroed stretches
// between batches raft.db already holds: the node starts and loses
// nothing. The same damage over batches raft.db lacks is refused.
func TestAnInterruptedWipeAfterACheckpointIsSkipped(t *testing.T) {
	tests := []struct {
		name       string
		checkpoint bool
		wantErr    string
	}{
		{"entries in raft.db", true, ""},
		{"entries only in the journal", false, "followed by an intact one"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := mustOpenJournalFixture(t, dir)
			for first := uint64(1); first < 10; first += 3 {
				batch := journalEntries(first, first+2, 1)
				for _, l := range batch {
					l.Data = bytes.Repeat([]byte{'x'}, 700)
				}
				if err := f.j.StoreLogs(batch); err != nil {
					t.Fatal(err)
				}
			}
			if tc.checkpoint {
				if err := f.j.storePending(); err != nil {
					t.Fatal(err)
				}
			}
			f.crash()
			b := journalBytesOnDisk(t, dir)
			copy(b[journalSector:], make([]byte, journalSector)) // the wipe reached the second sector only: inside the first batch
			if err := os.WriteFile(filepath.Join(dir, journalName), b, 0o600); err != nil {
				t.Fatal(err)
			}
			g, err := openJournalFixture(t, dir)
			if tc.wantErr != "" {
				if err == nil {
					g.crash()
					t.Fatal("opened a journal whose damaged batches raft.db lacks")
				}
				if !errors.Is(err, errJournalCorrupt) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("open: %v; want errJournalCorrupt saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(g.crash)
			if last, err := g.j.LastIndex(); err != nil || last != 9 {
				t.Fatalf("LastIndex = %d, %v; want 9", last, err)
			}
			var l raft.Log
			if err := g.j.GetLog(5, &l); err != nil || len(l.Data) != 700 {
				t.Fatalf("entry 5: %v, %d bytes", err, len(l.Data))
			}
			wantWiped(t, dir)
		})
	}
}

// The journal file is allocated ahead of the appends, so an append
// overwrites blocks the filesystem holds instead of extending the file:
// its length stays put while appends fill it, a batch too big for it
// grows it in journalGrow steps, a checkpoint wipes it in place, and the
// wipe cuts a file a bulk import grew past journalShrinkAbove back.
func TestTheJournalFileStaysAllocatedAcrossAppendsAndCheckpoints(t *testing.T) {
	dir := t.TempDir()
	f := mustOpenJournalFixture(t, dir)
	wantFile := func(stage string, length int64) {
		t.Helper()
		fi, err := os.Stat(filepath.Join(dir, journalName))
		if err != nil {
			t.Fatal(err)
		}
		blocks := fi.Sys().(*syscall.Stat_t).Blocks * 512
		if fi.Size() != length || blocks < length {
			t.Fatalf("%s: raft.journal is %d bytes with %d allocated, want %d of both", stage, fi.Size(), blocks, length)
		}
		if !isZero(journalBytesOnDisk(t, dir)[f.j.size:]) {
			t.Fatalf("%s: bytes after the batches are not zeros", stage)
		}
	}
	wantFile("opened", journalGrow)
	f.store(1, 100, 1)
	wantFile("after an append", journalGrow)
	big := journalEntries(101, 103, 1)
	for _, l := range big {
		l.Data = bytes.Repeat([]byte{'x'}, journalGrow/2)
	}
	if err := f.j.StoreLogs(big); err != nil {
		t.Fatal(err)
	}
	wantFile("after a batch bigger than the file", 2*journalGrow)
	if err := f.j.checkpoint(); err != nil {
		t.Fatal(err)
	}
	wantFile("after a checkpoint", 2*journalGrow)
	f.store(104, 104, 1)
	huge := journalEntries(105, 106, 1)
	for _, l := range huge {
		l.Data = bytes.Repeat([]byte{'y'}, journalShrinkAbove/2+1)
	}
	if err := f.j.StoreLogs(huge); err != nil { // past journalCheckpointBytes: checkpointed at once
		t.Fatal(err)
	}
	wantFile("after a bulk import's batch and its checkpoint", journalGrow)
	f.wantEntries(f.j, 1, 100, 1)
	f.wantEntries(f.j, 104, 104, 1)
	if last, err := f.j.LastIndex(); err != nil || last != 106 {
		t.Fatalf("LastIndex = %d, %v; want 106", last, err)
	}
}

// A follower cutting a conflicting tail that is still only in the journal
// must not see it come back from a replay after a crash.
func TestEntriesDeletedFromTheJournalStayDeletedAfterACrash(t *testing.T) {
	dir := t.TempDir()
	f := mustOpenJournalFixture(t, dir)
	f.store(1, 10, 1)
	if err := f.j.DeleteRange(6, 10); err != nil {
		t.Fatal(err)
	}
	f.store(6, 8, 2)
	f.crash()

	g := mustOpenJournalFixture(t, dir)
	g.wantEntries(g.j, 1, 5, 1)
	g.wantLog(g.j, 6, 8, 2)
}

// Compaction removes the head while newer entries sit in the journal; an
// append that leaves a gap (the first after a snapshot install) goes to
// raft.db, and the journal continues from it.
func TestTheJournalFollowsCompactionAndSnapshotGaps(t *testing.T) {
	dir := t.TempDir()
	f := mustOpenJournalFixture(t, dir)
	f.store(1, 5, 1)
	f.store(20, 22, 2)
	f.store(23, 24, 2)
	if err := f.j.DeleteRange(1, 5); err != nil {
		t.Fatal(err)
	}
	if first, err := f.j.FirstIndex(); err != nil || first != 20 {
		t.Fatalf("FirstIndex = %d, %v; want 20", first, err)
	}
	f.crash()

	g := mustOpenJournalFixture(t, dir)
	g.wantLog(g.j, 20, 24, 2)
	if first, err := g.j.FirstIndex(); err != nil || first != 20 {
		t.Fatalf("FirstIndex after the crash = %d, %v; want 20", first, err)
	}
}

// A clean Close leaves raft.db holding the whole log and no journal, so
// raft.bolt_direct (or an older rookeryd) can open the data dir; so does a
// crash that left the journal wiped. After a crash with entries in the
// journal, bolt_direct refuses instead of starting without them.
func TestBoltDirectOpensOnlyADataDirWithoutJournalEntries(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	t.Run("after Close", func(t *testing.T) {
		dir := t.TempDir()
		f := mustOpenJournalFixture(t, dir)
		f.store(1, 7, 1)
		f.stop()
		if _, err := os.Stat(filepath.Join(dir, journalName)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("raft.journal after Close: %v, want it removed", err)
		}
		st, err := openBoltStorage(filepath.Join(dir, raftDBName), false, logger)
		if err != nil {
			t.Fatal(err)
		}
		defer st.close()
		f.wantLog(st.logs, 1, 7, 1)
	})
	t.Run("after a crash right after a checkpoint", func(t *testing.T) {
		dir := t.TempDir()
		f := mustOpenJournalFixture(t, dir)
		f.store(1, 7, 1)
		if err := f.j.checkpoint(); err != nil {
			t.Fatal(err)
		}
		f.crash()
		st, err := openBoltStorage(filepath.Join(dir, raftDBName), false, logger)
		if err != nil {
			t.Fatalf("bolt_direct refused a data dir whose journal is wiped: %v", err)
		}
		defer st.close()
		f.wantLog(st.logs, 1, 7, 1)
		if _, err := os.Stat(filepath.Join(dir, journalName)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the wiped raft.journal: %v, want it removed", err)
		}
	})
	t.Run("after a crash", func(t *testing.T) {
		dir := t.TempDir()
		f := mustOpenJournalFixture(t, dir)
		f.store(1, 7, 1)
		f.crash()
		st, err := openBoltStorage(filepath.Join(dir, raftDBName), false, logger)
		if err == nil {
			st.close()
			t.Fatal("bolt_direct opened a data dir whose journal holds entries")
		}
		if !strings.Contains(err.Error(), journalName) {
			t.Fatalf("error %v does not name the journal", err)
		}
	})
}

// A journal that starts past raft.db's end, or disagrees with an entry
// raft.db holds, is not something this store writes: refused.
func TestAJournalThatDoesNotFitRaftDBIsRefused(t *testing.T) {
	tests := []struct {
		name    string
		journal []*raft.Log
		want    string
	}{
		{"gap after raft.db", journalEntries(9, 10, 1), "starts at entry 9"},
		{"other term for an entry raft.db has", journalEntries(3, 6, 2), "entry 3 has term 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := mustOpenJournalFixture(t, dir)
			f.store(1, 5, 1)
			f.stop()
			if err := os.WriteFile(filepath.Join(dir, journalName), appendJournalBatch(nil, tc.journal), 0o600); err != nil {
				t.Fatal(err)
			}
			g, err := openJournalFixture(t, dir)
			if err == nil {
				g.crash()
				t.Fatal("opened")
			}
			if !errors.Is(err, errJournalCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("open: %v; want %q", err, tc.want)
			}
		})
	}
}

// raft.db removed by hand with raft.journal left behind: the journal's
// entries are the middle of a log, and a new raft.db must not start from
// them. Restoring (or seeding) refuses such a directory too.
func TestAJournalWithoutRaftDBIsRefused(t *testing.T) {
	dir := t.TempDir()
	f := mustOpenJournalFixture(t, dir)
	f.store(1, 4, 1)
	f.crash()
	if err := os.Remove(filepath.Join(dir, raftDBName)); err != nil {
		t.Fatal(err)
	}
	if err := checkEmptyDataDir(dir); err == nil || !strings.Contains(err.Error(), journalName) {
		t.Fatalf("seeding over a leftover journal: %v, want it refused naming %s", err, journalName)
	}
	st, err := openBoltStorage(filepath.Join(dir, raftDBName), true, slog.New(slog.DiscardHandler))
	if err == nil {
		st.close()
		t.Fatal("opened a journal whose raft.db is gone")
	}
	if !strings.Contains(err.Error(), "is missing") {
		t.Fatalf("open: %v, want it to say raft.db is missing", err)
	}
}

// A journal that holds only zeros (a crash right after a wipe) is no
// middle of a log: with raft.db gone, the node starts on a new one.
func TestAWipedJournalWithoutRaftDBDoesNotStopAStart(t *testing.T) {
	dir := t.TempDir()
	f := mustOpenJournalFixture(t, dir)
	f.store(1, 4, 1)
	if err := f.j.checkpoint(); err != nil {
		t.Fatal(err)
	}
	f.crash()
	if err := os.Remove(filepath.Join(dir, raftDBName)); err != nil {
		t.Fatal(err)
	}
	st, err := openBoltStorage(filepath.Join(dir, raftDBName), true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("a wiped journal without raft.db stopped the start: %v", err)
	}
	defer st.close()
	if last, err := st.logs.LastIndex(); err != nil || last != 0 {
		t.Fatalf("LastIndex = %d, %v; want an empty log", last, err)
	}
}

// failingStores makes raft.db refuse appends while set.
type failingStores struct {
	raft.LogStore
	fail bool
}

func (s *failingStores) StoreLogs(logs []*raft.Log) error {
	if s.fail {
		return errors.New("disk full")
	}
	return s.LogStore.StoreLogs(logs)
}

// While raft.db cannot be written, appends keep going to the journal (they
// are durable there) up to journalPendingLimit; past it an append fails
// without being stored. Once raft.db can be written, the next append
// checkpoints everything, and each checkpoint is reported.
func TestFailingCheckpointsAreRetriedThenRefuseAppends(t *testing.T) {
	dir := t.TempDir()
	bolt, err := openCheckedBolt(filepath.Join(dir, raftDBName))
	if err != nil {
		t.Fatal(err)
	}
	defer bolt.Close()
	stores := &failingStores{LogStore: bolt, fail: true}
	j, err := openJournal(filepath.Join(dir, journalName), stores, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var failed, succeeded int
	j.observe = func(_ time.Duration, _ int, err error) {
		if err != nil {
			failed++
		} else {
			succeeded++
		}
	}
	var last uint64
	for last < journalPendingLimit {
		if err := j.StoreLogs(journalEntries(last+1, last+16, 1)); err != nil {
			t.Fatalf("append %d..%d with %d pending: %v", last+1, last+16, len(j.pending), err)
		}
		last += 16
	}
	if err := j.StoreLogs(journalEntries(last+1, last+1, 1)); err == nil {
		t.Fatalf("append with %d entries pending and raft.db failing succeeded", len(j.pending))
	}
	if got, _ := j.LastIndex(); got != last {
		t.Fatalf("LastIndex after a refused append = %d, want %d (not stored)", got, last)
	}
	if failed == 0 || succeeded != 0 {
		t.Fatalf("checkpoints reported: %d failed, %d succeeded", failed, succeeded)
	}
	stores.fail = false
	if err := j.StoreLogs(journalEntries(last+1, last+1, 1)); err != nil {
		t.Fatal(err)
	}
	if boltLast, err := bolt.LastIndex(); err != nil || boltLast < last {
		t.Fatalf("raft.db LastIndex = %d, %v; want at least %d after raft.db recovered", boltLast, err, last)
	}
	if succeeded == 0 {
		t.Fatal("the recovering checkpoint was not reported")
	}
}
