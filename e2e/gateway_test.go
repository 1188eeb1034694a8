package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/internal/freeport"
	"github.com/rookery/rookery/internal/metrics/metricstest"
	"github.com/rookery/rookery/internal/murder"
	"github.com/rookery/rookery/internal/testcluster"
)

// TestGatewayRoutesFromRookeryThroughNodeFailure runs real Cyrus backends
// pushing to a three-node Rookery cluster and a rookery-gateway process
// whose replica follows the cluster's Watch stream. Killing the Rookery
// node the gateway watches must disturb neither an open IMAP session nor
// new logins, and a user moved with XFER is routed to the new backend.
func TestGatewayRoutesFromRookeryThroughNodeFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rc := testcluster.Start(t, testcluster.Options{})
	m := murder.Start(t, murder.Options{
		Roles:          []string{murder.RoleBE1, murder.RoleBE2},
		BackendMupdate: startFailoverRelay(t, []string{rc.Nodes[0].MupdateAddr, rc.Nodes[1].MupdateAddr, rc.Nodes[2].MupdateAddr}),
	})
	dialIMAP(t, m.IMAPAddr(murder.RoleBE1), murder.AdminUser, murder.AdminPass).mustOK("CREATE user/alice")
	dialIMAP(t, m.IMAPAddr(murder.RoleBE2), murder.AdminUser, murder.AdminPass).mustOK("CREATE user/bob")

	gw := startGateway(t, rc, m)
	waitFor(ctx, t, "gateway replica ready (/readyz)", func() error {
		resp, err := http.Get("http://" + gw.metrics + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})

	alice := dialIMAP(t, gw.imap, "alice", "alicepw")
	alice.mustOK("SELECT INBOX")

	rc.Kill(0) // the gateway's first endpoint

	t.Run("open session keeps working", func(t *testing.T) {
		alice.mustOK("NOOP")
		alice.mustOK("STATUS INBOX (MESSAGES)")
	})
	t.Run("new logins keep working", func(t *testing.T) {
		for _, u := range []struct{ user, pass string }{{"alice", "alicepw"}, {"bob", "bobpw"}} {
			s := dialIMAP(t, gw.imap, u.user, u.pass)
			s.mustOK("SELECT INBOX")
		}
	})
	t.Run("metrics count the logins", func(t *testing.T) {
		f, err := metricstest.Scrape(gw.metrics)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := f.Value("rookery_gateway_connections_total", "protocol", "imap"); n < 3 {
			t.Errorf("/metrics rookery_gateway_connections_total{protocol=imap} = %v, want >= 3", n)
		}
	})
	t.Run("moved user is routed to the new backend", func(t *testing.T) {
		be2 := dialIMAP(t, m.IMAPAddr(murder.RoleBE2), murder.AdminUser, murder.AdminPass)
		be2.mustOK("XFER user/bob be1")
		subject := fmt.Sprintf("moved-%d", time.Now().UnixNano())
		waitFor(ctx, t, "gateway delivers to bob on be1", func() error {
			if err := deliverGatewayLMTP(gw.lmtp, "bob@example.org", subject); err != nil {
				return err
			}
			s := dialIMAP(t, m.IMAPAddr(murder.RoleBE1), "bob", "bobpw")
			s.mustOK("SELECT INBOX")
			_, res := s.do(`SEARCH SUBJECT "` + subject + `"`)
			for _, l := range res {
				if strings.HasPrefix(l, "* SEARCH ") && len(l) > len("* SEARCH ") {
					return nil
				}
			}
			return fmt.Errorf("message %s not in bob's INBOX on be1 yet", subject)
		})
		s := dialIMAP(t, gw.imap, "bob", "bobpw")
		s.mustOK("SELECT INBOX")
		if _, res := s.do(`SEARCH SUBJECT "` + subject + `"`); !strings.Contains(strings.Join(res, " "), "* SEARCH 1") {
			t.Errorf("bob's login through the gateway does not see the message on be1: %q", res)
		}
	})
}

type gatewayProc struct{ imap, lmtp, metrics string }

func startGateway(t *testing.T, rc *testcluster.Cluster, m *murder.Murder) gatewayProc {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "rookery-gateway")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/rookery/rookery/cmd/rookery-gateway").CombinedOutput(); err != nil {
		t.Fatalf("build rookery-gateway: %v\n%s", err, out)
	}
	ports := freeport.T(t, 3)
	gw := gatewayProc{imap: fmt.Sprintf("127.0.0.1:%d", ports[0]), lmtp: fmt.Sprintf("127.0.0.1:%d", ports[1]), metrics: fmt.Sprintf("127.0.0.1:%d", ports[2])}
	conf := fmt.Sprintf(`[gateway]
hostname = "gw.example.org"
[gateway.listen]
imap = %q
lmtp = %q
[gateway.backend]
auth = "passthrough"
authname = "proxy"
password = "proxypw"
[gateway.metrics]
listen = %q
[gateway.names]
virtual_domains = true
default_domain = "example.org"
[gateway.directory]
endpoints = %s
token = %q
[gateway.servers.be1]
imap = %q
lmtp = %q
[gateway.servers.be2]
imap = %q
lmtp = %q
`, gw.imap, gw.lmtp, gw.metrics, tomlList(rc.GRPCAddrs()), rc.Token,
		m.IMAPAddr(murder.RoleBE1), m.LMTPAddr(murder.RoleBE1), m.IMAPAddr(murder.RoleBE2), m.LMTPAddr(murder.RoleBE2))
	path := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "gateway.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", path)
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
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", gw.imap, 200*time.Millisecond); err == nil {
			c.Close()
			return gw
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway did not listen on %s", gw.imap)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tomlList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
