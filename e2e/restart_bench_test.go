package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/rookery/rookery/internal/testcluster"
	"github.com/rookery/rookery/internal/testnode"
)

// BenchmarkRestartOneNodeToServing measures what an operator sees when one
// rookeryd of a three-process cluster holding ROOKERY_BENCH_MAILBOXES
// (default 1M) realistic mailboxes is restarted: the nodes are seeded with
// `rookeryd snapshot-restore` of one generated snapshot, the cluster
// starts and elects a leader (once: b.Loop), then, b.N times, a follower
// is stopped (SIGTERM) and exec'd again on its data. It prints, from that exec, the
// time until its gRPC health says SERVING and until a linearizable Get
// sent to it is answered, and the CPU time the process used by then. The
// other two nodes keep serving meanwhile, as in a rolling restart.
//
//	ROOKERY_BENCH_MAILBOXES=10000000 go test ./e2e -run '^$' -bench BenchmarkRestartOneNodeToServing -benchtime 3x -timeout 60m
func BenchmarkRestartOneNodeToServing(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("ROOKERY_BENCH_MAILBOXES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 36 {
			b.Fatalf("ROOKERY_BENCH_MAILBOXES=%q: want a number >= 36", s)
		}
	}
	snap := writeSnapshotFile(b, n)
	rc := testcluster.Start(b, testcluster.Options{
		ExtraArgs:  []string{"-log.level", "info"},
		LeaderWait: 30 * time.Minute,
		Prepare: func(bin, peers string, dirs []string) error {
			for _, d := range dirs {
				if out, err := exec.Command(bin, "snapshot-restore", snap, "--data-dir", d, "--peers", peers).CombinedOutput(); err != nil {
					return fmt.Errorf("snapshot-restore: %w: %s", err, out)
				}
			}
			return nil
		},
	})
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		leader, err := rc.WaitLeader(ctx)
		if err != nil {
			b.Fatal(err)
		}
		f := (leader + 1) % len(rc.Nodes)
		rc.Stop(f)
		la0 := loadAvg()
		start := time.Now()
		rc.Start(f)
		health, read, err := awaitServing(ctx, rc, f)
		cancel()
		if err != nil {
			b.Fatalf("%s after restart: %v\n%s", rc.Nodes[f].ID, err, rc.Log(f))
		}
		cpu := processCPU(b, rc.Nodes[f].Pid())
		fmt.Printf("\nrestart of %s with %d mailboxes: health SERVING after %.2f s, linearizable Get answered after %.2f s, %.1f CPU-s; load average %s -> %s\n",
			rc.Nodes[f].ID, n, health.Sub(start).Seconds(), read.Sub(start).Seconds(), cpu, la0, loadAvg())
		b.ReportMetric(read.Sub(start).Seconds(), "s-to-read")
		b.ReportMetric(health.Sub(start).Seconds(), "s-to-health")
		b.ReportMetric(cpu, "cpu-s")
	}
	b.ReportMetric(0, "ns/op")
}

// writeSnapshotFile writes the realistic snapshot and gives its memory back
// before the nodes start.
func writeSnapshotFile(b *testing.B, n int) string {
	path := b.TempDir() + "/dir.snap"
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := testnode.WriteRealisticSnapshot(f, n); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	debug.FreeOSMemory()
	return path
}

// awaitServing polls node i's gRPC health until SERVING, then sends
// linearizable Gets to it until one is answered, and returns both times.
func awaitServing(ctx context.Context, rc *testcluster.Cluster, i int) (health, read time.Time, err error) {
	conn, err := grpc.NewClient(rc.Nodes[i].GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return health, read, err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return health, read, fmt.Errorf("never SERVING: %w", err)
		}
	}
	health = time.Now()
	cl := rc.NodeClient(i)
	for {
		e, _, err := cl.Get(ctx, "user.u0000007", false)
		if err == nil && e.Name == "user.u0000007" {
			return health, time.Now(), nil
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return health, read, fmt.Errorf("no linearizable Get answered: %w", err)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// processCPU is user + system CPU seconds of a running process.
func processCPU(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command's closing parenthesis; utime and stime are
	// the 14th and 15th of the line, in clock ticks (100 per second here).
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / 100
}

func loadAvg() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(raw))[:3], " ")
}
