package fsm

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// realisticCommands returns n ACTIVATE commands shaped like a production
// murder: users with five folders each, a quarter of them in a virtual
// domain, eight backends, one ACL per user shared by the user's folders.
func realisticCommands(n int) []Command { return realisticRange(0, n) }

// realisticRange returns commands from..to of the realisticCommands
// sequence, so a large store can be built without holding all commands.
func realisticRange(from, to int) []Command {
	folders := []string{"", ".Sent", ".Trash", ".Drafts", ".Sent.Archive"}
	n := to - from
	cmds := make([]Command, 0, n)
	for u := from / len(folders); len(cmds) < n; u++ {
		user := fmt.Sprintf("u%07d", u)
		base := "user." + user
		if u%4 == 0 {
			base = "example.com!" + base
		}
		loc := fmt.Sprintf("imap-backend-%02d!default", u%8)
		acl := user + "\tlrswipkxtecdan\t"
		for fi, f := range folders {
			if u*len(folders)+fi < from {
				continue
			}
			if len(cmds) == n {
				break
			}
			cmds = append(cmds, Command{Op: OpActivate, Name: base + f, Location: loc, ACL: acl, Identity: "imap-backend", Time: int64(u)})
		}
	}
	return cmds
}

// populateRealistic applies n realistic commands in batches, generating
// them as it goes.
func populateRealistic(s *Store, n, batch int) {
	idx := s.AppliedIndex()
	for i := 0; i < n; i += batch {
		idx++
		s.Apply(idx, realisticRange(i, min(i+batch, n)))
	}
}

func populate(s *Store, cmds []Command, batch int) {
	idx := s.AppliedIndex()
	for i := 0; i < len(cmds); i += batch {
		idx++
		s.Apply(idx, cmds[i:min(i+batch, len(cmds))])
	}
}

// BenchmarkApply applies realistic commands on a store of 200k mailboxes:
// the pool of commands is cycled, so after the first pass every ACTIVATE
// replaces an entry and the store keeps its size.
func BenchmarkApply(b *testing.B) {
	const pool = 200_000
	cmds := realisticCommands(pool)
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := New(DefaultConfig())
			populate(s, cmds, 1000)
			b.ReportAllocs()
			b.ResetTimer()
			next := 0
			for i := 0; i < b.N; i++ {
				if next+batch > pool {
					next = 0
				}
				s.Apply(uint64(i+2), cmds[next:next+batch])
				next += batch
			}
			perCmd := float64(b.Elapsed().Nanoseconds()) / float64(b.N*batch)
			b.ReportMetric(perCmd, "ns/cmd")
			b.ReportMetric(1e9/perCmd, "cmds/s")
		})
	}
}

func BenchmarkGet(b *testing.B) {
	const n = 200_000
	cmds := realisticCommands(n)
	s := New(DefaultConfig())
	populate(s, cmds, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := s.Get(cmds[(i*7919)%n].Name); !ok {
			b.Fatal("missing")
		}
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkHeapPerMailbox1M reports the live heap per mailbox at one
// million mailboxes, with and without the default 100k-event history.
func BenchmarkHeapPerMailbox1M(b *testing.B) {
	const n = 1_000_000
	for _, tc := range []struct {
		name string
		cfg  Config
	}{{"history=none", Config{HistorySize: -1}}, {"history=default", DefaultConfig()}} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				before := heapInUse()
				s := New(tc.cfg)
				populateRealistic(s, n, 1000)
				after := heapInUse()
				b.ReportMetric(float64(after-before)/n, "B/mailbox")
				runtime.KeepAlive(s)
			}
		})
	}
}

var million = sync.OnceValue(func() *Store {
	s := New(DefaultConfig())
	populateRealistic(s, 1_000_000, 1000)
	return s
})

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

func BenchmarkSnapshotWrite1M(b *testing.B) {
	s := million()
	b.ResetTimer()
	var size int64
	for i := 0; i < b.N; i++ {
		var w countingWriter
		if _, err := s.Snapshot().WriteTo(&w); err != nil {
			b.Fatal(err)
		}
		size = w.n
	}
	b.ReportMetric(float64(size)/1e6, "MB")
	b.ReportMetric(float64(size)/float64(s.Len()), "B/mailbox")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/write")
}

func BenchmarkRestore1M(b *testing.B) {
	var buf bytes.Buffer
	if _, err := million().Snapshot().WriteTo(&buf); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		before := heapInUse()
		s := New(DefaultConfig())
		b.StartTimer()
		if err := s.Restore(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(heapInUse()-before)/float64(s.Len()), "B/mailbox")
		runtime.KeepAlive(s)
		b.StartTimer()
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/restore")
}

// slowWriter models a disk writing at a bounded rate, so a snapshot of a
// million mailboxes takes a while and Applies overlap it.
type slowWriter struct{ perMB time.Duration }

func (w slowWriter) Write(p []byte) (int, error) {
	time.Sleep(time.Duration(len(p)) * w.perMB / (1 << 20))
	return len(p), nil
}

// BenchmarkApplyDuringSnapshot1M measures single-command Apply latency on a
// million-mailbox store, idle and while a snapshot streams to a writer that
// takes 20 ms per MB (a slow disk). Applies are paced (one per 100 µs, as a
// raft FSM loop sees them) and update existing mailboxes, so the store keeps
// its size.
func BenchmarkApplyDuringSnapshot1M(b *testing.B) {
	const n = 1_000_000
	s := New(DefaultConfig())
	populateRealistic(s, n, 1000)
	updates := realisticCommands(50_000)
	next := 0
	apply := func() time.Duration {
		c := updates[next%len(updates)]
		c.ACL = fmt.Sprintf("%sanyone\tp%d\t", c.ACL, next)
		next++
		start := time.Now()
		s.Apply(s.AppliedIndex()+1, []Command{c})
		return time.Since(start)
	}
	paced := func(stop <-chan struct{}, count int) []time.Duration {
		var lat []time.Duration
		for count <= 0 || len(lat) < count {
			select {
			case <-stop:
				return lat
			default:
			}
			lat = append(lat, apply())
			time.Sleep(100 * time.Microsecond)
		}
		return lat
	}
	report := func(prefix string, lat []time.Duration) {
		if len(lat) == 0 {
			return
		}
		slices.Sort(lat)
		at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
		b.ReportMetric(at(0.5), prefix+"-p50-µs")
		b.ReportMetric(at(0.99), prefix+"-p99-µs")
		b.ReportMetric(at(0.999), prefix+"-p99.9-µs")
		b.ReportMetric(at(1), prefix+"-max-µs")
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		report("idle", paced(nil, 5000))

		sn := s.Snapshot()
		done := make(chan struct{})
		var size int64
		start := time.Now()
		go func() {
			defer close(done)
			size, _ = sn.WriteTo(slowWriter{perMB: 20 * time.Millisecond})
		}()
		during := paced(done, 0)
		b.ReportMetric(time.Since(start).Seconds(), "snapshot-s")
		b.ReportMetric(float64(size)/1e6, "snapshot-MB")
		b.ReportMetric(float64(len(during)), "applies-during")
		report("during", during)
	}
}
