package mupdatecompat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
)

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// scaleStore holds n realistic mailboxes (five folders per user, one ACL
// per user) spread over eight large backends, plus `small` mailboxes on
// the backend "be-small".
func scaleStore(n, small int) *fsm.Store {
	s := fsm.New(fsm.DefaultConfig())
	folders := []string{"", ".Sent", ".Trash", ".Drafts", ".Sent.Archive"}
	idx := uint64(0)
	batch := make([]fsm.Command, 0, 4096)
	flush := func() {
		idx++
		s.Apply(idx, batch)
		batch = batch[:0]
	}
	for i := 0; i < n; i++ {
		u := i / len(folders)
		loc := fmt.Sprintf("imap-backend-%02d!default", u%8)
		if i < small {
			loc = "be-small!default"
		}
		batch = append(batch, fsm.Command{Op: fsm.OpActivate, Name: fmt.Sprintf("user.u%07d%s", u, folders[i%len(folders)]),
			Location: loc, ACL: fmt.Sprintf("u%07d\tlrswipkxtecdan\t", u)})
		if len(batch) == cap(batch) {
			flush()
		}
	}
	flush()
	return s
}

// BenchmarkScaleMupdate measures, on a directory of ROOKERY_BENCH_MAILBOXES
// (default 1M) realistic mailboxes: a fresh slave's UPDATE dump (every
// entry on the wire, read by a minimal client in the same process), and
// the LIST "be-small!" that `ctl_mboxlist -m` starts with on a backend
// holding 10k of them. Wall and process CPU time are reported; on a
// shared, loaded machine the CPU time is the figure that carries over.
func BenchmarkScaleMupdate(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("ROOKERY_BENCH_MAILBOXES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	const small = 10_000
	env := benchEnv(b, scaleStore(n, small))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := dialRaw(env.addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.cmd("A01", "A01 AUTHENTICATE \"PLAIN\" \""+benchIR+"\"\r\n"); err != nil {
			b.Fatal(err)
		}
		measure := func(name, tag, cmd, done string, scale float64, unit string) {
			wall, cpu := time.Now(), processCPU()
			if l, err := s.cmd(tag, cmd); err != nil || !strings.Contains(l, done) {
				b.Fatalf("%s: %q %v", name, l, err)
			}
			b.ReportMetric(time.Since(wall).Seconds()*scale, name+"-"+unit)
			b.ReportMetric((processCPU()-cpu).Seconds()*scale, name+"-cpu-"+unit)
		}
		measure("list-10k-server", "L01", "L01 LIST \"be-small!\"\r\n", "list complete", 1e3, "ms")
		measure("update-dump", "U01", "U01 UPDATE\r\n", "streaming starts", 1, "s")
		s.nc.Close()
	}
}
