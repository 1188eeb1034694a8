package cluster

import (
	"encoding/json"
	"hash/crc64"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// BenchmarkVerifySnapshotAtStart measures the start-up check of one
// snapshot file (read once: raft's CRC-64, the header and store CRC-32C)
// for a directory of 250k mailboxes, and prints its size.
//
//	go test ./cluster -run '^$' -bench VerifySnapshotAtStart -benchtime 10x
func BenchmarkVerifySnapshotAtStart(b *testing.B) {
	const mailboxes = 250_000
	a := newFSMAdapter(fsm.New(fsm.Config{}), slog.New(slog.DiscardHandler))
	for i, idx := 0, uint64(1); i < mailboxes; idx++ {
		cmds := make([]fsm.Command, 0, 1000)
		for ; len(cmds) < 1000 && i < mailboxes; i++ {
			cmds = append(cmds, activate(i))
		}
		a.ApplyBatch([]*raft.Log{{Index: idx, Type: raft.LogCommand, Data: fsm.EncodeCommands(cmds)}})
	}
	snap, err := a.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "state.bin")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	if err := snap.(*fsmSnapshot).write(io.MultiWriter(f, h)); err != nil {
		b.Fatal(err)
	}
	fi, _ := f.Stat()
	f.Close()
	meta := &snapshotMetaFile{SnapshotMeta: raft.SnapshotMeta{Size: fi.Size()}, CRC: h.Sum(nil)}
	if _, err := json.Marshal(meta); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := verifySnapshotState(path, meta); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(fi.Size())/1e6, "MB/snapshot")
}

// BenchmarkVerifyLogAtStart measures the start-up read of every log entry
// (raft-boltdb, 20k entries of 10 commands: about the default trailing log
// plus one snapshot threshold) and prints entries per second.
//
//	go test ./cluster -run '^$' -bench VerifyLogAtStart -benchtime 5x
func BenchmarkVerifyLogAtStart(b *testing.B) {
	const entries, perEntry = 20_000, 10
	st, err := openBoltStorage(filepath.Join(b.TempDir(), raftDBName), false, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer st.close()
	batch := make([]*raft.Log, 0, 500)
	for i := 1; i <= entries; i++ {
		cmds := make([]fsm.Command, perEntry)
		for j := range cmds {
			cmds[j] = activate(i*perEntry + j)
		}
		batch = append(batch, &raft.Log{Index: uint64(i), Term: 1, Type: raft.LogCommand, Data: fsm.EncodeCommands(cmds)})
		if len(batch) == cap(batch) || i == entries {
			if err := st.logs.StoreLogs(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	fileOf := func(uint64) string { return raftDBName }
	logger := slog.New(slog.DiscardHandler)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := verifyLog(st.logs, 0, fileOf, logger); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(entries)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
