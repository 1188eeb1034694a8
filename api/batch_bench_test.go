package api_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/internal/migrate"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBatchLoad loads ROOKERY_BENCH_MAILBOXES (default 200k)
// realistic mailboxes through Directory.Batch into an in-process
// three-node cluster (real raft, bolt logs on disk, gRPC on loopback),
// 4096 per call, 4 calls in flight, as `rookeryctl import` does. Besides
// the wall time it reports the CPU time of the whole process (three nodes
// and the client) per mailbox, which does not depend on what else the
// machine runs: on an idle two-core machine the wall time is bounded below
// by half of it.
func BenchmarkBatchLoad(b *testing.B) {
	n := 200_000
	if s := os.Getenv("ROOKERY_BENCH_MAILBOXES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	folders := []string{"", ".Sent", ".Trash", ".Drafts", ".Sent.Archive"}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c := apitest.Start(b, apitest.Options{})
		cl := newClient(b, []string{c.Nodes[c.WaitLeader()].APIAddr})
		b.StartTimer()
		cpu0, start := cpuTime(), time.Now()
		l := migrate.NewLoader(context.Background(), cl, migrate.LoaderConfig{})
		for j := 0; j < n; j++ {
			u := j / len(folders)
			l.Add(migrate.Entry{
				Name:     fmt.Sprintf("user.u%07d%s", u, folders[j%len(folders)]),
				Location: fmt.Sprintf("imap-backend-%02d!default", u%8),
				ACL:      fmt.Sprintf("u%07d\tlrswipkxtecdan\t", u),
			})
		}
		st, err := l.Close()
		if err != nil || st.Written != int64(n) {
			b.Fatalf("%+v %v", st, err)
		}
		el, cpu := time.Since(start), cpuTime()-cpu0
		b.ReportMetric(float64(n)/el.Seconds(), "mailboxes/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/mailbox")
		la, _ := os.ReadFile("/proc/loadavg")
		b.Logf("%d mailboxes in %s, %s CPU; load average %s", n, el.Round(time.Millisecond), cpu.Round(time.Millisecond), strings.TrimSpace(string(la)))
		b.StopTimer()
		c.Close()
	}
}
