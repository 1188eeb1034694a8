package cluster

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// BenchmarkJournalAppendSync compares one journal append (a 1 KB batch:
// one write and one fdatasync) as the journal makes it, overwriting the
// zeros it allocated, with the same write and fdatasync at the end of a
// growing file, which is what the journal did before it kept its file
// allocated. It reports each case's p50 per append next to the mean, with
// one writer and with three at once (the three nodes of `make run` share
// one disk). The journal's mean includes its checkpoints into raft.db
// (every 256 appends); its p50 does not.
//
//	go test ./cluster -run '^$' -bench JournalAppendSync -benchtime 2000x
func BenchmarkJournalAppendSync(b *testing.B) {
	cases := []struct {
		name   string
		append func(b *testing.B, dir string) func(i int)
	}{
		{"journal", journalAppender},
		{"extending file", extendingAppender},
	}
	for _, c := range cases {
		for _, writers := range []int{1, 3} {
			b.Run(fmt.Sprintf("%s/writers=%d", c.name, writers), func(b *testing.B) {
				appends := make([]func(int), writers)
				for w := range appends {
					appends[w] = c.append(b, b.TempDir())
				}
				lat := make([][]time.Duration, writers)
				b.ResetTimer()
				done := make(chan struct{})
				for w := range appends {
					go func() {
						defer func() { done <- struct{}{} }()
						for i := range b.N {
							t := time.Now()
							appends[w](i)
							lat[w] = append(lat[w], time.Since(t))
						}
					}()
				}
				for range appends {
					<-done
				}
				b.StopTimer()
				var merged []time.Duration
				for _, l := range lat {
					merged = append(merged, l...)
				}
				sort.Slice(merged, func(i, j int) bool { return merged[i] < merged[j] })
				b.ReportMetric(float64(merged[len(merged)/2].Microseconds()), "p50-µs/append")
			})
		}
	}
}

// journalAppender appends 1 KB batches through a journalStore.
func journalAppender(b *testing.B, dir string) func(int) {
	f := mustOpenJournalFixture(b, dir)
	return func(i int) {
		logs := journalEntries(uint64(i)+1, uint64(i)+1, 1)
		logs[0].Data = bytes.Repeat([]byte{'x'}, 1000)
		if err := f.j.StoreLogs(logs); err != nil {
			b.Error(err)
		}
	}
}

// extendingAppender writes the same batches at the end of a file that
// grows with each, and fdatasyncs it.
func extendingAppender(b *testing.B, dir string) func(int) {
	file, err := os.OpenFile(filepath.Join(dir, "extending"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { file.Close() })
	var off int64
	return func(i int) {
		logs := journalEntries(uint64(i)+1, uint64(i)+1, 1)
		logs[0].Data = bytes.Repeat([]byte{'x'}, 1000)
		buf := appendJournalBatch(nil, logs)
		if _, err := file.WriteAt(buf, off); err != nil {
			b.Error(err)
		}
		if err := fdatasync(file); err != nil {
			b.Error(err)
		}
		off += int64(len(buf))
	}
}
