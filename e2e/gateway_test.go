package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
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
	waitGatewayReady(ctx, t, gw)

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

func waitGatewayReady(ctx context.Context, t *testing.T, gw gatewayProc) {
	t.Helper()
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
}

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

// TestGatewayServesTheUniformNamespaceLikeCyrusFrontend runs one Rookery
// directory with two real Cyrus backends, the real Cyrus frontend (its
// mupdate slave following Rookery) and rookery-gateway (following the
// Watch stream), and plays the same IMAP session as alice (INBOX on be1)
// through both front ends: NAMESPACE, LIST across both backends
// (another user's folder and shared.* on be2, one folder hidden by a
// negative right), SELECT and FETCH on mailboxes of both backends in one
// session, APPEND and COPY into be2 mailboxes, CREATE of folders that must
// land on be1 (alice's own) and be2 (inside shared.proj), and the errors
// for missing mailboxes. The transcripts, with each front end's own
// folder names folded to one placeholder, must be identical.
func TestGatewayServesTheUniformNamespaceLikeCyrusFrontend(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rc := testcluster.Start(t, testcluster.Options{})
	m := murder.Start(t, murder.Options{
		Roles:           []string{murder.RoleBE1, murder.RoleBE2, murder.RoleFE},
		BackendMupdate:  startFailoverRelay(t, []string{rc.Nodes[0].MupdateAddr, rc.Nodes[1].MupdateAddr, rc.Nodes[2].MupdateAddr}),
		FrontendMupdate: rc.Nodes[0].MupdateAddr,
	})
	be1 := dialIMAP(t, m.IMAPAddr(murder.RoleBE1), murder.AdminUser, murder.AdminPass)
	be2 := dialIMAP(t, m.IMAPAddr(murder.RoleBE2), murder.AdminUser, murder.AdminPass)
	// A backend's CREATE fails while the cluster elects a leader (a busy
	// machine makes that happen); setup retries, the scenario does not.
	retryOK := func(s *imapSession, cmd string) {
		for try := 0; ; try++ {
			st, _ := s.do(cmd)
			if strings.HasPrefix(st, "OK") || strings.Contains(st, "already exists") {
				return
			}
			if try == 20 || ctx.Err() != nil {
				t.Fatalf("imap %q: %s", cmd, st)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	for _, c := range []string{"CREATE user/alice", "CREATE user/alice/Sent"} {
		retryOK(be1, c)
	}
	for _, c := range []string{
		"CREATE user/bob", "CREATE user/bob/Shared", "SETACL user/bob/Shared alice lrswi",
		"CREATE user/bob/Secret", "SETACL user/bob/Secret anyone lr", "SETACL user/bob/Secret -alice lr",
		"CREATE user/bob/Private",
		"CREATE shared", "SETACL shared anyone lr",
		"CREATE shared/proj", "SETACL shared/proj alice lrswipkxtecda",
		"SETACL user/bob/Shared admin lrswi", "SETACL shared/proj admin lrswi",
	} {
		retryOK(be2, c)
	}
	be1.mustOK("SETACL user/alice admin lrswi")
	for _, a := range []struct {
		s           *imapSession
		mb, subject string
	}{{be1, "user/alice", "INBOX message"}, {be2, "user/bob/Shared", "bob shares this"}, {be2, "shared/proj", "project note"}} {
		if st := appendRaw(t, a.s, a.mb, a.subject); !strings.HasPrefix(st, "OK") {
			t.Fatalf("APPEND %s as admin: %s", a.mb, st)
		}
	}

	gw := startGateway(t, rc, m)
	waitGatewayReady(ctx, t, gw)
	waitFor(ctx, t, "gateway and frontend see shared/proj", func() error {
		for _, addr := range []string{gw.imap, m.IMAPAddr(murder.RoleFE)} {
			s := dialIMAP(t, addr, "alice", "alicepw")
			_, res := s.do(`LIST "" "*"`)
			if !strings.Contains(strings.Join(res, "\n"), "shared/proj") {
				return fmt.Errorf("%s does not list shared/proj yet: %q", addr, res)
			}
		}
		return nil
	})

	cl := rc.Client()
	where := func(name string) string {
		var server string
		waitFor(ctx, t, name+" in the directory", func() error {
			e, _, err := cl.Get(ctx, name, false)
			if err != nil {
				return err
			}
			server = strings.SplitN(e.Location, "!", 2)[0]
			return nil
		})
		return server
	}
	cyrus := murderScenario(t, m.IMAPAddr(murder.RoleFE), "fe", where)
	gateway := murderScenario(t, gw.imap, "gw", where)
	if strings.Join(cyrus, "\n") != strings.Join(gateway, "\n") {
		t.Errorf("the gateway's session differs from the Cyrus frontend's\n---- cyrus frontend ----\n%s\n---- gateway ----\n%s",
			strings.Join(cyrus, "\n"), strings.Join(gateway, "\n"))
	}
	for _, want := range []string{"Projects-RUN is on be1", "sub-RUN is on be2", "copied message found: true", "Subject: bob shares this"} {
		if !strings.Contains(strings.Join(cyrus, "\n"), want) {
			t.Errorf("the scenario lacks %q: the test no longer checks what it says", want)
		}
	}
}

// murderScenario runs alice's session through the front end at addr and
// returns a transcript normalised for comparison: tags, timings, UIDs and
// the run name are folded away, LIST output is sorted.
func murderScenario(t *testing.T, addr, run string, where func(internal string) string) []string {
	t.Helper()
	s := dialIMAP(t, addr, "alice", "alicepw")
	var out []string
	rec := func(cmd string) (string, []string) {
		st, res := s.do(cmd)
		if !strings.HasPrefix(st, "OK") {
			t.Logf("%s: %s: %s", run, cmd, st)
		}
		out = append(out, fold(cmd, run)+" => "+fold(statusWord(st), run))
		return st, res
	}
	_, res := rec("NAMESPACE")
	out = append(out, res...)
	_, res = rec(`LIST "" "*"`)
	out = append(out, sortedLines(res, run)...)
	_, res = rec(`LIST "" "%"`)
	out = append(out, sortedLines(res, run)...)
	_, res = rec(`LIST "Other Users/" "*"`)
	out = append(out, sortedLines(res, run)...)

	for _, mb := range []string{`"Other Users/bob/Shared"`, `"Shared Folders/shared/proj"`, "INBOX", `"Other Users/bob/Shared"`} {
		rec("EXAMINE " + mb)
		_, res = rec("FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
		out = append(out, pick(res, regexp.MustCompile(`^Subject: .*`))...)
	}
	rec("SELECT INBOX")
	before := exists(t, s, `"Shared Folders/shared/proj"`)
	rec(`COPY 1 "Shared Folders/shared/proj"`)
	out = append(out, fmt.Sprintf("shared/proj grew by %d", exists(t, s, `"Shared Folders/shared/proj"`)-before))
	before = exists(t, s, `"Other Users/bob/Shared"`)
	st := appendRaw(t, s, "Other Users/bob/Shared", "appended through "+run)
	out = append(out, "APPEND => "+statusWord(st))
	out = append(out, fmt.Sprintf("bob/Shared grew by %d", exists(t, s, `"Other Users/bob/Shared"`)-before))

	rec(`SELECT "Shared Folders/shared/proj"`)
	_, res = rec(`UID SEARCH SUBJECT "INBOX message"`)
	out = append(out, fmt.Sprintf("copied message found: %v", len(strings.Fields(strings.Join(res, " "))) > 2))
	for _, cmd := range []string{
		`MYRIGHTS "Other Users/bob/Shared"`, `MYRIGHTS "Shared Folders/shared/proj"`,
		`GETACL "Shared Folders/shared/proj"`, `GETACL "Other Users/bob/Shared"`,
		`SETACL "Shared Folders/shared/proj" bob lr`, `GETACL "Shared Folders/shared/proj"`,
		`DELETEACL "Shared Folders/shared/proj" bob`, `LISTRIGHTS "Shared Folders/shared/proj" bob`,
		`GETQUOTAROOT INBOX`, `MYRIGHTS "Other Users/bob/Nowhere"`,
	} {
		_, res = rec(cmd)
		out = append(out, sortedLines(sortACL(res), run)...)
	}
	rec(`COPY 1 "Other Users/bob/Nowhere"`)
	rec(`COPY 1 "Nowhere-` + run + `"`)
	st = appendRaw(t, s, "Shared Folders/shared/nowhere", "nowhere")
	out = append(out, "APPEND to shared/nowhere => "+statusWord(st))
	rec(`STATUS "Other Users/bob/Private" (MESSAGES)`)
	rec(`SELECT "Other Users/bob/Secret"`)
	rec("CREATE Projects-" + run)
	rec(`CREATE "Shared Folders/shared/proj/sub-` + run + `"`)
	_, res = rec(`LIST "" "Projects-` + run + `"`)
	out = append(out, sortedLines(res, run)...)
	out = append(out, "Projects-RUN is on "+where("user.alice.Projects-"+run))
	out = append(out, "sub-RUN is on "+where("shared.proj.sub-"+run))
	rec("DELETE Projects-" + run)
	rec(`DELETE "Shared Folders/shared/proj/sub-` + run + `"`)
	rec("LOGOUT")
	return out
}

// appendRaw appends a small message with a synchronizing-free literal.
func appendRaw(t *testing.T, s *imapSession, mailbox, subject string) string {
	t.Helper()
	msg := "From: test@example.org\r\nSubject: " + subject + "\r\n\r\nbody\r\n"
	st, _ := s.do(fmt.Sprintf("APPEND %q (\\Seen) {%d+}\r\n%s", mailbox, len(msg), msg))
	return st
}

func exists(t *testing.T, s *imapSession, mailbox string) int {
	t.Helper()
	st, res := s.do("STATUS " + mailbox + " (MESSAGES)")
	for _, l := range res {
		var n int
		if i := strings.Index(l, "(MESSAGES "); i >= 0 {
			fmt.Sscanf(l[i:], "(MESSAGES %d)", &n)
			return n
		}
	}
	t.Fatalf("STATUS %s: %s %q", mailbox, st, res)
	return 0
}

// statusWord keeps the status and response code of a tagged reply
// (MAILBOXID, which the gateway does not offer, aside).
func statusWord(st string) string {
	f := strings.Fields(st)
	if len(f) == 0 {
		return ""
	}
	if len(f) > 1 && strings.HasPrefix(f[1], "[") && !strings.HasPrefix(f[1], "[MAILBOXID") {
		return f[0] + " " + strings.TrimRight(strings.SplitN(f[1], " ", 2)[0], "]") + "]"
	}
	return f[0]
}

func fold(s, run string) string { return strings.ReplaceAll(s, run, "RUN") }

// sortedLines folds the run name and the quoting of mailbox names (an
// atom and a quoted string are the same name; go-imap always quotes) and
// sorts.
func sortedLines(lines []string, run string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = strings.ReplaceAll(fold(l, run), `"`, "")
	}
	sort.Strings(out)
	return out
}

// sortACL sorts the identifier/rights pairs of ACL responses: Cyrus keeps
// its stored order, go-imap's client returns a map (RFC 4314 sets no
// order).
func sortACL(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l
		rest, ok := strings.CutPrefix(strings.ReplaceAll(l, `"`, ""), "* ACL ")
		if !ok {
			continue
		}
		// The mailboxes here are "Shared Folders/...": through the
		// first field holding a '/'.
		f := strings.Fields(rest)
		k := 0
		for k < len(f) && !strings.Contains(f[k], "/") {
			k++
		}
		var pairs []string
		for j := k + 1; j+1 < len(f); j += 2 {
			pairs = append(pairs, f[j]+" "+f[j+1])
		}
		sort.Strings(pairs)
		out[i] = "* ACL " + strings.Join(f[:min(k+1, len(f))], " ") + " " + strings.Join(pairs, " ")
	}
	return out
}

func pick(lines []string, re *regexp.Regexp) []string {
	var out []string
	for _, l := range lines {
		if m := re.FindString(l); m != "" {
			out = append(out, m)
		}
	}
	return out
}
