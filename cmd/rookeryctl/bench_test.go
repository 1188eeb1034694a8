package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/internal/testcluster"
)

// benchMailboxes is the size of the import benchmarks
// (ROOKERY_BENCH_MAILBOXES, default one million).
func benchMailboxes(b *testing.B) int {
	if s := os.Getenv("ROOKERY_BENCH_MAILBOXES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("ROOKERY_BENCH_MAILBOXES=%q", s)
		}
		return n
	}
	return 1_000_000
}

// writeBenchDump writes a ctl_mboxlist -d dump of n mailboxes shaped like
// a production murder: five folders per user, eight backends, one ACL per
// user.
func writeBenchDump(b *testing.B, n int) string {
	path := filepath.Join(b.TempDir(), "mboxlist.json")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	folders := []string{"", ".Sent", ".Trash", ".Drafts", ".Sent.Archive"}
	w.WriteString("{\n")
	for i := 0; i < n; i++ {
		u := i / len(folders)
		name := fmt.Sprintf("user.u%07d%s", u, folders[i%len(folders)])
		sep := ",\n"
		if i == n-1 {
			sep = "\n"
		}
		fmt.Fprintf(w, `"%s": {"name": "%s", "mbtype": "e", "partition": "default", "server": "imap-backend-%02d", "acl": {"u%07d": "lrswipkxtecdan"}, "name_history": []}%s`,
			name, name, u%8, u, sep)
	}
	w.WriteString("}\n")
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	return path
}

// BenchmarkImportDump loads a ctl_mboxlist -d dump into a fresh three-node
// rookeryd cluster (separate processes, default settings, as `make run`)
// through the public API with `rookeryctl import`, and reports mailboxes
// per second and the wall time. The cluster's nodes are one process each
// on one machine with rookeryctl: on a shared machine the figure is a floor.
func BenchmarkImportDump(b *testing.B) {
	n := benchMailboxes(b)
	dump := writeBenchDump(b, n)
	bin := filepath.Join(b.TempDir(), "rookeryctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		rc := testcluster.Start(b, testcluster.Options{ExtraArgs: []string{"-log.level", "info"}})
		b.StartTimer()
		start := time.Now()
		cmd := exec.Command(bin, "import", "--from-dump", dump)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + b.TempDir(),
			"ROOKERY_ENDPOINTS=" + strings.Join(rc.GRPCAddrs(), ","), "ROOKERY_TOKEN=" + rc.Token}
		out, err := cmd.CombinedOutput()
		el := time.Since(start)
		if err != nil || !strings.Contains(string(out), fmt.Sprintf("imported: %d written", n)) {
			b.Fatalf("import: %v\n%s", err, out)
		}
		b.ReportMetric(el.Seconds(), "s/import")
		b.ReportMetric(float64(n)/el.Seconds(), "mailboxes/s")
		b.Logf("%d mailboxes in %s; load average %s", n, el.Round(time.Millisecond), loadavg())
	}
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}
