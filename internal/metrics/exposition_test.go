package metrics_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/deploy"
	"github.com/rookery/rookery/internal/freeport"
	"github.com/rookery/rookery/internal/metrics/metricstest"
	"github.com/rookery/rookery/internal/mupdateclient"
	"github.com/rookery/rookery/internal/testcluster"
)

// nodeSeries are the series every rookeryd exports from its start.
var nodeSeries = []string{
	"rookery_server_has_leader", "rookery_server_is_leader", "rookery_server_leader_changes_seen_total",
	"rookery_raft_commit_index", "rookery_raft_applied_index", "rookery_raft_commit_duration_seconds",
	"rookery_disk_log_fsync_duration_seconds", "rookery_disk_log_checkpoint_duration_seconds", "rookery_raft_peer_last_contact_seconds",
	"rookery_server_proposals_failed_total", "rookery_server_leader_reads_total", "rookery_directory_revision",
	"rookery_directory_reserved_oldest_age_seconds", "rookery_mupdate_connections", "rookery_mupdate_streams",
	"rookery_mupdate_full_dumps_total", "rookery_auth_failures_total", "rookery_mupdate_refusals_total",
	"rookery_server_alarm", "rookery_server_reads_refused",
	"go_goroutines", "process_resident_memory_bytes",
}

// TestRookerydAndGatewayExportPrometheusMetrics is the operator's view:
// real rookeryd processes and a real rookery-gateway, scraped over HTTP
// and parsed with Prometheus's own parser; the counters move after a
// MUPDATE create, a failed login and a leader transfer.
func TestRookerydAndGatewayExportPrometheusMetrics(t *testing.T) {
	rc := testcluster.Start(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	scrape := func(addr string) metricstest.Families {
		t.Helper()
		f, err := metricstest.Scrape(addr)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	value := func(f metricstest.Families, name string, labels ...string) float64 {
		v, _ := f.Value(name, labels...)
		return v
	}
	leader, err := rc.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n0 := rc.Nodes[leader].DebugAddr
	before := map[string]metricstest.Families{}
	for _, n := range rc.Nodes {
		f := scrape(n.DebugAddr)
		for _, name := range nodeSeries {
			if _, ok := f[name]; !ok {
				t.Errorf("%s: /metrics lacks %s", n.ID, name)
			}
		}
		before[n.ID] = f
	}
	if v := value(before[rc.Nodes[leader].ID], "rookery_server_is_leader"); v != 1 {
		t.Errorf("leader's rookery_server_is_leader = %v", v)
	}

	// A MUPDATE create through the leader, as a Cyrus backend does it.
	mc, err := mupdateclient.Dial(ctx, rc.Nodes[leader].MupdateAddr, mupdateclient.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := mc.Reserve(ctx, "user.alice", "be1!default"); err != nil {
		t.Fatal(err)
	}
	if err := mc.Activate(ctx, "user.alice", "be1!default", "alice\tlrswipkxtecda\t"); err != nil {
		t.Fatal(err)
	}
	// A create that never finishes: its reservation ages.
	if err := mc.Reserve(ctx, "user.stuck", "be2!default"); err != nil {
		t.Fatal(err)
	}
	reservedAt := time.Now()
	mc.Close()
	// A failed login.
	bad := mupdateclient.DefaultConfig()
	bad.Password = "wrong"
	if c, err := mupdateclient.Dial(ctx, rc.Nodes[leader].MupdateAddr, bad); err == nil {
		c.Close()
		t.Fatal("login with a wrong password succeeded")
	}
	// And a gRPC call with a wrong password.
	ccfg := client.DefaultConfig()
	ccfg.Token = "admin:wrong"
	badc, err := client.Dial([]string{rc.Nodes[leader].GRPCAddr}, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := badc.Status(ctx); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Status with a wrong password: %v, want UNAUTHENTICATED", err)
	}
	badc.Close()
	after := scrape(n0)
	b := before[rc.Nodes[leader].ID]
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"rookery_mupdate_commands_total", []string{"command", "ACTIVATE", "result", "ok"}},
		{"rookery_mupdate_commands_total", []string{"command", "AUTHENTICATE", "result", "no"}},
		{"rookery_mupdate_command_duration_seconds", []string{"command", "RESERVE"}},
		{"rookery_auth_failures_total", []string{"protocol", "mupdate"}},
		{"rookery_auth_failures_total", []string{"protocol", "grpc"}},
		{"grpc_server_handled_total", []string{"grpc_method", "Status", "grpc_code", "Unauthenticated"}},
		{"rookery_raft_commit_index", nil},
		{"rookery_directory_revision", nil},
		{"rookery_disk_log_fsync_duration_seconds", nil},
		{"rookery_raft_commit_duration_seconds", nil},
		{"raft_commitTime", nil}, // hashicorp/raft's own go-metrics, bridged
	} {
		if got, was := value(after, c.name, c.labels...), value(b, c.name, c.labels...); got <= was {
			t.Errorf("%s%v did not move after a create and a failed login: %v -> %v", c.name, c.labels, was, got)
		}
	}
	if v := value(after, "rookery_directory_mailboxes", "state", "active", "server", "be1"); v != 1 {
		t.Errorf("rookery_directory_mailboxes{state=active,server=be1} = %v, want 1", v)
	}
	if v := value(after, "rookery_directory_mailboxes", "state", "reserved", "server", "be2"); v != 1 {
		t.Errorf("rookery_directory_mailboxes{state=reserved,server=be2} = %v, want 1", v)
	}
	time.Sleep(time.Second)
	age := value(scrape(n0), "rookery_directory_reserved_oldest_age_seconds")
	if limit := time.Since(reservedAt).Seconds() + 1; age < 1 || age > limit {
		t.Errorf("rookery_directory_reserved_oldest_age_seconds = %v, want between 1 and %.1f", age, limit)
	}

	// A leader transfer: every node sees a new leader; the gRPC call is
	// counted.
	// Asked of the leader itself: the multi-endpoint client retries on
	// UNAVAILABLE, and a retry after a transfer that did happen fails. On a
	// loaded machine leadership may also move on its own meanwhile.
	waitFor(t, "a leadership transfer", func() bool {
		l, err := rc.WaitLeader(ctx)
		if err != nil {
			return false
		}
		_, err = rc.NodeClient(l).TransferLeadership(ctx, "")
		return err == nil
	})
	for _, n := range rc.Nodes {
		was := value(before[n.ID], "rookery_server_leader_changes_seen_total")
		waitFor(t, n.ID+" leader changes to move", func() bool {
			return value(scrape(n.DebugAddr), "rookery_server_leader_changes_seen_total") > was
		})
	}
	grpcCalls := 0.0
	for _, n := range rc.Nodes {
		grpcCalls += value(scrape(n.DebugAddr), "grpc_server_handled_total",
			"grpc_service", "rookery.v1.Cluster", "grpc_method", "TransferLeadership", "grpc_code", "OK")
	}
	if grpcCalls < 1 {
		t.Errorf("grpc_server_handled_total{method=TransferLeadership,code=OK} summed over the nodes = %v", grpcCalls)
	}

	// The gateway, following the cluster.
	gw := startGateway(t, rc)
	waitFor(t, "gateway replica ready", func() bool {
		f, err := metricstest.Scrape(gw.metrics)
		return err == nil && value(f, "rookery_gateway_replica_ready") == 1
	})
	gwBefore := scrape(gw.metrics)
	if err := imapLogin(gw.imap, "ghost", "pw"); err == nil {
		t.Fatal("login of an unknown user succeeded")
	}
	gwAfter := scrape(gw.metrics)
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"rookery_gateway_connections_total", []string{"protocol", "imap"}},
		{"rookery_gateway_logins_total", []string{"result", "failed"}},
		{"rookery_gateway_routes_total", []string{"outcome", "unknown"}},
	} {
		if got, was := value(gwAfter, c.name, c.labels...), value(gwBefore, c.name, c.labels...); got <= was {
			t.Errorf("gateway %s%v did not move after a failed login: %v -> %v", c.name, c.labels, was, got)
		}
	}
	if rev := value(after, "rookery_directory_revision"); value(gwAfter, "rookery_gateway_replica_revision") < rev {
		t.Errorf("gateway replica revision %v behind the directory's %v", value(gwAfter, "rookery_gateway_replica_revision"), rev)
	}

	// Every metric deploy/ names is exported by a node or the gateway.
	exported := map[string]bool{}
	for _, f := range []metricstest.Families{scrape(n0), gwAfter} {
		for name, fam := range f {
			exported[name] = true
			switch fam.GetType().String() {
			case "HISTOGRAM":
				exported[name+"_bucket"], exported[name+"_sum"], exported[name+"_count"] = true, true, true
			case "SUMMARY":
				exported[name+"_sum"], exported[name+"_count"] = true, true
			}
		}
	}
	exprs, err := deploy.Exprs()
	if err != nil {
		t.Fatal(err)
	}
	for where, expr := range exprs {
		names, err := deploy.MetricNames(expr)
		if err != nil {
			t.Errorf("%s: %v", where, err)
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("%s names %s, which no node or gateway exports", where, n)
			}
		}
	}
}

type gatewayProc struct{ imap, metrics string }

// startGateway builds and runs rookery-gateway against the cluster.
func startGateway(t *testing.T, rc *testcluster.Cluster) gatewayProc {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "rookery-gateway")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/rookery/rookery/cmd/rookery-gateway").CombinedOutput(); err != nil {
		t.Fatalf("build rookery-gateway: %v\n%s", err, out)
	}
	gw := gatewayProc{imap: freeport.Addr(t), metrics: freeport.Addr(t)}
	logf, err := os.Create(filepath.Join(dir, "gateway.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"-gateway.listen.imap="+gw.imap, "-gateway.metrics.listen="+gw.metrics,
		"-gateway.backend.auth=passthrough", "-gateway.limits.auth_failure_delay=10ms",
		"-gateway.directory.endpoints="+strings.Join(rc.GRPCAddrs(), ","),
		"-gateway.directory.token="+rc.Token)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("---- gateway log ----\n%s", b)
		}
	})
	return gw
}

// imapLogin tries one IMAP LOGIN; nil means it succeeded.
func imapLogin(addr, user, pass string) error {
	c, err := dialText(addr)
	if err != nil {
		return err
	}
	defer c.close()
	if _, err := c.line(); err != nil {
		return err
	}
	if err := c.send("a LOGIN " + user + " " + pass + "\r\n"); err != nil {
		return err
	}
	l, err := c.line()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(l, "a OK") {
		return fmt.Errorf("%s", l)
	}
	return nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
