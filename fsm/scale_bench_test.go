package fsm

import (
	"bytes"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// phase measures wall and process CPU time; on a shared, loaded machine
// the CPU time is the figure that carries over (GC work included).
type phase struct {
	wall time.Time
	cpu  time.Duration
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startPhase() phase { return phase{time.Now(), cpuNow()} }

// report adds name-s (wall) and name-cpu-s metrics, scaled by unit.
func (p phase) report(b *testing.B, name string, scale float64, unit string) {
	b.ReportMetric(time.Since(p.wall).Seconds()*scale, name+"-"+unit)
	b.ReportMetric((cpuNow()-p.cpu).Seconds()*scale, name+"-cpu-"+unit)
}

// scaleN is the directory size of the scale benchmarks:
// ROOKERY_BENCH_MAILBOXES, default one million (set 10000000 for the
// ten-million figures in docs/notes/scale.md).
func scaleN(b *testing.B) int {
	if s := os.Getenv("ROOKERY_BENCH_MAILBOXES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("ROOKERY_BENCH_MAILBOXES=%q", s)
		}
		return n
	}
	return 1_000_000
}

// BenchmarkScale builds a store of scaleN realistic mailboxes (eight
// backends, five folders per user, one ACL per user) with the default
// history and reports: live heap per mailbox as grown by applies and
// after its first snapshot (which compacts the trees), snapshot size, the time to
// write and to restore a snapshot (the FSM part of a restart, indexes
// included), a full listing in name order (an UPDATE dump's scan) and a
// listing of one backend (ctl_mboxlist -m's LIST "server!") through the
// server index.
func BenchmarkScale(b *testing.B) {
	n := scaleN(b)
	for i := 0; i < b.N; i++ {
		before := heapInUse()
		s := New(DefaultConfig())
		populateRealistic(s, n, 4096)
		b.ReportMetric(float64(heapInUse()-before)/float64(n), "heap-B/mailbox")

		// The first snapshot also rebuilds the trees dense (compact);
		// the second is a plain write.
		p := startPhase()
		if _, err := s.Snapshot().WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
		p.report(b, "snapshot-write+compact", 1, "s")
		b.ReportMetric(float64(heapInUse()-before)/float64(n), "compacted-heap-B/mailbox")
		var buf bytes.Buffer
		p = startPhase()
		if _, err := s.Snapshot().WriteTo(&buf); err != nil {
			b.Fatal(err)
		}
		p.report(b, "snapshot-write", 1, "s")
		b.ReportMetric(float64(buf.Len())/1e6, "snapshot-MB")

		v := s.View()
		p = startPhase()
		all := 0
		v.ScanName("", func(Entry) bool { all++; return true })
		p.report(b, "scan-all", 1, "s")
		p = startPhase()
		one := 0
		v.ScanLocation("imap-backend-03!", func(Entry) bool { one++; return true })
		p.report(b, "scan-one-server", 1e3, "ms")
		// The same listing as a filtered full scan: what LIST "server!"
		// cost before the server index.
		p = startPhase()
		filtered := 0
		v.ScanName("", func(e Entry) bool {
			if strings.HasPrefix(e.Location, "imap-backend-03!") {
				filtered++
			}
			return true
		})
		p.report(b, "scan-one-server-unindexed", 1e3, "ms")
		if filtered != one {
			b.Fatalf("index found %d, full scan %d", one, filtered)
		}
		if all != n || one < n/9 || one > n/7 {
			b.Fatalf("scanned %d and %d of %d", all, one, n)
		}
		runtime.KeepAlive(s)
		s, v = nil, nil
		runtime.GC()

		before = heapInUse()
		r := New(DefaultConfig())
		p = startPhase()
		if err := r.Restore(bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
		p.report(b, "restore", 1, "s")
		// A restored store's trees are dense (see state.fill), as are
		// those of a grown store after a snapshot (Store.compact).
		b.ReportMetric(float64(heapInUse()-before)/float64(n), "restored-heap-B/mailbox")
		if r.Len() != n {
			b.Fatalf("restored %d", r.Len())
		}
	}
}
