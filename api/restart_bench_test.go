package api_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/internal/testnode"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// BenchmarkRestartToServing measures how long a three-node cluster whose
// nodes hold a snapshot of ROOKERY_BENCH_MAILBOXES (default 1M) realistic
// mailboxes takes from opening its data dirs (seeded with `rookeryd
// snapshot-restore`, as after a restart from a snapshot) to answering a
// linearizable Get: raft restores the snapshot on every node (FSM restore
// with its indexes), elects a leader and serves. All three nodes restore
// at once in one process on one machine; the CPU time is reported too.
func BenchmarkRestartToServing(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("ROOKERY_BENCH_MAILBOXES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	dir := b.TempDir()
	snap := filepath.Join(dir, "dir.snap")
	writeRealisticSnapshot(b, snap, n)
	rookeryd := filepath.Join(dir, "rookeryd")
	if out, err := exec.Command("go", "build", "-o", rookeryd, "github.com/rookery/rookery/cmd/rookeryd").CombinedOutput(); err != nil {
		b.Fatalf("build rookeryd: %v\n%s", err, out)
	}
	for i := 0; i < b.N; i++ {
		var start time.Time
		var cpu0 time.Duration
		c := apitest.Start(b, apitest.Options{Prepare: func(peers []cluster.Peer, dirs []string) error {
			var list []string
			for _, p := range peers {
				list = append(list, fmt.Sprintf("%s=%s/%s", p.ID, p.RaftAddr, p.APIAddr))
			}
			for _, d := range dirs {
				if out, err := exec.Command(rookeryd, "snapshot-restore", snap, "--data-dir", d, "--peers", strings.Join(list, ",")).CombinedOutput(); err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
			}
			start, cpu0 = time.Now(), cpuTime()
			return nil
		}})
		g, err := dirClient(b, c.Nodes[c.Follower()].APIAddr).Get(testCtx(b), &rookeryv1.GetRequest{Name: "user.u0000007"})
		if err != nil || g.GetMailbox().GetState() != rookeryv1.MailboxState_MAILBOX_STATE_ACTIVE {
			b.Fatalf("get after restart: %v %v", g, err)
		}
		el, cpu := time.Since(start), cpuTime()-cpu0
		b.ReportMetric(el.Seconds(), "s-to-serving")
		b.ReportMetric(cpu.Seconds(), "cpu-s-3-nodes")
		la, _ := os.ReadFile("/proc/loadavg")
		b.Logf("%d mailboxes: serving after %s, %s CPU for three nodes; load average %s", n, el.Round(time.Millisecond), cpu.Round(time.Millisecond), strings.TrimSpace(string(la)))
		c.Close()
	}
}

func writeRealisticSnapshot(b *testing.B, path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := testnode.WriteRealisticSnapshot(f, n); err != nil {
		b.Fatal(err)
	}
}
