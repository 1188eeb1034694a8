package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/murder"
	"github.com/rookery/rookery/internal/testcluster"
)

// TestCyrusMurderRunsOnRookery swaps a real Cyrus 3.6 murder's mupdate
// master for a three-node Rookery cluster and drives it the way a site
// does: be1 and be2 push to two different nodes (be1 through a failover
// address, as a DNS name listing every node would), the frontend's mupdate
// slave syncs from the third, and the node be1 talks to — made leader — is
// killed with SIGKILL part-way.
func TestCyrusMurderRunsOnRookery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rc := testcluster.Start(t, testcluster.Options{})
	cl := rc.Client()
	// n1 leads, so killing it later kills the leader.
	waitLeaderIs(ctx, t, rc, 0)

	be1Mupdate := startFailoverRelay(t, []string{rc.Nodes[0].MupdateAddr, rc.Nodes[1].MupdateAddr, rc.Nodes[2].MupdateAddr})
	m := murder.Start(t, murder.Options{
		Roles:           []string{murder.RoleBE1, murder.RoleBE2, murder.RoleFE},
		BackendMupdate:  be1Mupdate,
		FrontendMupdate: rc.Nodes[2].MupdateAddr,
	})
	host, port, _ := net.SplitHostPort(rc.Nodes[1].MupdateAddr)
	if err := m.Restart(ctx, murder.RoleBE2, "BE_MUPDATE_HOST="+host, "BE_MUPDATE_PORT="+port); err != nil {
		t.Fatalf("point be2 at n2: %v", err)
	}

	be1 := dialIMAP(t, m.IMAPAddr(murder.RoleBE1), murder.AdminUser, murder.AdminPass)
	be2 := dialIMAP(t, m.IMAPAddr(murder.RoleBE2), murder.AdminUser, murder.AdminPass)

	t.Run("create setacl rename delete on both backends", func(t *testing.T) {
		for _, s := range []struct {
			imap *imapSession
			user string
		}{{be1, "alice"}, {be1, "carol"}, {be2, "bob"}} {
			u := s.user
			s.imap.mustOK("CREATE user/" + u)
			s.imap.mustOK("CREATE user/" + u + "/Sent")
			s.imap.mustOK("CREATE user/" + u + "/tmp")
			s.imap.mustOK("SETACL user/" + u + "/Sent anyone lrs")
			s.imap.mustOK("RENAME user/" + u + "/tmp user/" + u + "/tmp2")
			// Cyrus admins need the x right to delete another user's folder.
			s.imap.mustOK("SETACL user/" + u + "/tmp2 admin lrswipkxtecda")
			s.imap.mustOK("DELETE user/" + u + "/tmp2")
		}
		want := map[string]string{
			"user.alice": "be1!default", "user.alice.Sent": "be1!default",
			"user.carol": "be1!default", "user.carol.Sent": "be1!default",
			"user.bob": "be2!default", "user.bob.Sent": "be2!default",
		}
		dir := listDirectory(ctx, t, cl)
		for name, loc := range want {
			if e, ok := dir[name]; !ok || e.Location != loc || e.State != fsm.StateActive {
				t.Errorf("directory %s = %+v, want ACTIVE at %s", name, e, loc)
			}
		}
		for name := range dir {
			if strings.Contains(name, ".tmp") && !strings.HasPrefix(name, "DELETED.") {
				t.Errorf("directory still holds %s after RENAME+DELETE", name)
			}
		}
		if e := dir["user.alice.Sent"]; !strings.Contains(e.ACL, "anyone\tlrs\t") {
			t.Errorf("user.alice.Sent ACL %q lacks the SETACL", e.ACL)
		}
	})

	t.Run("leader killed, backends keep writing", func(t *testing.T) {
		rc.Kill(0)
		// be1's next operations go to another node through the failover
		// address; be2's node forwards to the new leader.
		be1 = dialIMAP(t, m.IMAPAddr(murder.RoleBE1), murder.AdminUser, murder.AdminPass)
		be1.mustOK("CREATE user/alice/afterkill")
		be2.mustOK("CREATE user/bob/afterkill")
		be2.mustOK("SETACL user/bob/afterkill anyone lr")
		dir := listDirectory(ctx, t, cl)
		for _, n := range []string{"user.alice.afterkill", "user.bob.afterkill"} {
			if _, ok := dir[n]; !ok {
				t.Errorf("%s missing from the directory after the leader was killed", n)
			}
		}
	})

	t.Run("XFER a user from be1 to be2 through the frontend", func(t *testing.T) {
		fe := dialIMAP(t, m.IMAPAddr(murder.RoleFE), murder.AdminUser, murder.AdminPass)
		waitFor(ctx, t, "frontend slave learns user.carol", func() error {
			_, list := fe.do(`LIST "" "user/carol"`)
			if len(list) == 0 {
				return fmt.Errorf("fe does not list user/carol yet")
			}
			return nil
		})
		fe.mustOK("RENAME user/carol user/carol be2!default")
		dir := listDirectory(ctx, t, cl)
		for _, n := range []string{"user.carol", "user.carol.Sent"} {
			if e := dir[n]; e.Location != "be2!default" || e.State != fsm.StateActive {
				t.Errorf("after XFER %s = %+v, want ACTIVE at be2!default", n, e)
			}
		}
	})

	t.Run("restarted node catches up", func(t *testing.T) {
		rc.Start(0)
		waitFor(ctx, t, "n1 catches up", func() error {
			st, err := cl.StatusOf(ctx, rc.Nodes[0].GRPCAddr)
			if err != nil {
				return err
			}
			lst, err := cl.Status(ctx)
			if err != nil {
				return err
			}
			if st.Revision < lst.Revision {
				return fmt.Errorf("n1 at revision %d, cluster at %d", st.Revision, lst.Revision)
			}
			return nil
		})
	})

	t.Run("ctl_mboxlist -m on each backend exits 0 and changes nothing", func(t *testing.T) {
		// Cyrus itself sends "server!" with an empty partition for renamed
		// and delayed-deleted mailboxes (docs/mupdate.md §5, §10); its first
		// ctl_mboxlist -m re-activates those with the backend's partition,
		// against the real Cyrus master too. That is the only change the
		// first run may make; the second run must change nothing.
		pushAll := func() {
			for _, role := range []string{murder.RoleBE1, murder.RoleBE2} {
				if out, err := m.CtlMboxlist(ctx, role, "-m"); err != nil {
					t.Fatalf("ctl_mboxlist -m on %s: %v\n%s", role, err, out)
				}
			}
		}
		before := listDirectory(ctx, t, cl)
		pushAll()
		first := listDirectory(ctx, t, cl)
		for name, b := range before {
			a, ok := first[name]
			switch {
			case !ok:
				t.Errorf("first ctl_mboxlist -m removed %s", name)
			case sameEntry(a, b):
			case strings.HasSuffix(b.Location, "!") && strings.HasPrefix(a.Location, b.Location) && a.ACL == b.ACL && a.State == b.State:
				t.Logf("first ctl_mboxlist -m filled the empty partition Cyrus sent for %s: %s -> %s", name, b.Location, a.Location)
			default:
				t.Errorf("first ctl_mboxlist -m changed %s: %+v -> %+v", name, b, a)
			}
		}
		if len(first) != len(before) {
			t.Errorf("first ctl_mboxlist -m changed the number of entries: %d -> %d", len(before), len(first))
		}
		pushAll()
		if second := listDirectory(ctx, t, cl); !maps.EqualFunc(first, second, sameEntry) {
			t.Errorf("second ctl_mboxlist -m changed the directory:\nbefore %v\nafter  %v", first, second)
		}
	})

	t.Run("frontend slave database equals the directory", func(t *testing.T) {
		waitFor(ctx, t, "fe mailboxes.db equals Rookery", func() error {
			out, err := m.CtlMboxlist(ctx, murder.RoleFE, "-d")
			if err != nil {
				return fmt.Errorf("ctl_mboxlist -d on fe: %v", err)
			}
			return compareSlaveDump(out, listDirectory(ctx, t, cl))
		})
	})

	t.Run("users log in through the frontend and are proxied", func(t *testing.T) {
		for _, u := range []struct{ user, pass string }{{"alice", "alicepw"}, {"bob", "bobpw"}} {
			s := dialIMAP(t, m.IMAPAddr(murder.RoleFE), u.user, u.pass)
			s.mustOK("SELECT INBOX")
			s.mustOK("LOGOUT")
		}
	})

	t.Run("LMTP through the frontend delivers", func(t *testing.T) {
		subject := fmt.Sprintf("rookery-e2e-%d", time.Now().UnixNano())
		if err := deliverLMTP(m.LMTPAddr(murder.RoleFE), []string{"alice", "bob"}, subject); err != nil {
			t.Fatal(err)
		}
		for _, u := range []struct{ user, pass string }{{"alice", "alicepw"}, {"bob", "bobpw"}} {
			s := dialIMAP(t, m.IMAPAddr(murder.RoleFE), u.user, u.pass)
			s.mustOK("SELECT INBOX")
			_, res := s.do(`SEARCH SUBJECT "` + subject + `"`)
			if !slices.ContainsFunc(res, func(l string) bool { return strings.HasPrefix(l, "* SEARCH ") && len(l) > len("* SEARCH ") }) {
				t.Errorf("%s did not receive %s: %q", u.user, subject, res)
			}
		}
	})

	t.Run("mupdatetest works against every node", func(t *testing.T) {
		for i := range rc.Nodes {
			out, err := m.MupdateTest(ctx, rc.MupdatePort(i), "mupdate", "mupdatepw", "L1 LIST\r\nF1 FIND \"user.alice\"\r\nN1 NOOP\r\nQ1 LOGOUT\r\n")
			if err != nil || !strings.Contains(out, `L1 OK "list complete"`) || !strings.Contains(out, "user.alice") || !strings.Contains(out, `N1 OK "Noop done"`) {
				t.Errorf("mupdatetest against n%d: %v\n%s", i+1, err, out)
			}
		}
	})

	t.Run("shared e2e-check.py passes against a Rookery node", func(t *testing.T) {
		runE2ECheck(ctx, t, m, rc.MupdatePort(1))
	})
}

func waitLeaderIs(ctx context.Context, t *testing.T, rc *testcluster.Cluster, want int) {
	t.Helper()
	waitFor(ctx, t, "leader is "+rc.Nodes[want].ID, func() error {
		got, err := rc.WaitLeader(ctx)
		if err != nil {
			return err
		}
		if got != want {
			_, err := rc.NodeClient(got).TransferLeadership(ctx, rc.Nodes[want].ID)
			return fmt.Errorf("leader is %s (transfer: %v)", rc.Nodes[got].ID, err)
		}
		return nil
	})
}

func waitFor(ctx context.Context, t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var err error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

func listDirectory(ctx context.Context, t *testing.T, cl *client.Client) map[string]fsm.Entry {
	t.Helper()
	entries, _, err := cl.ListAll(ctx, client.ListOptions{})
	if err != nil {
		t.Fatalf("list directory: %v", err)
	}
	out := map[string]fsm.Entry{}
	for _, e := range entries {
		out[e.Name] = e
	}
	return out
}

func sameEntry(a, b fsm.Entry) bool {
	return a.State == b.State && a.Location == b.Location && a.ACL == b.ACL
}

// compareSlaveDump checks a Cyrus `ctl_mboxlist -d` JSON dump from the
// frontend against the directory: same names, server, partition, ACL and
// reserved state.
func compareSlaveDump(dump string, dir map[string]fsm.Entry) error {
	var got map[string]struct {
		MBType    string            `json:"mbtype"`
		Partition string            `json:"partition"`
		Server    string            `json:"server"`
		ACL       map[string]string `json:"acl"`
	}
	if err := json.Unmarshal([]byte(dump), &got); err != nil {
		return fmt.Errorf("parse ctl_mboxlist -d: %v\n%s", err, dump)
	}
	var diffs []string
	for name, e := range dir {
		g, ok := got[name]
		if !ok {
			diffs = append(diffs, "fe lacks "+name)
			continue
		}
		server, part, _ := strings.Cut(e.Location, "!")
		reserved := strings.Contains(g.MBType, "z")
		if g.Server != server || g.Partition != part || reserved != (e.State == fsm.StateReserved) || !maps.Equal(g.ACL, parseACL(e.ACL)) {
			diffs = append(diffs, fmt.Sprintf("%s: fe %+v, rookery %+v", name, g, e))
		}
	}
	for name := range got {
		if _, ok := dir[name]; !ok {
			diffs = append(diffs, "fe has extra "+name)
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		return fmt.Errorf("frontend slave differs from the directory:\n%s", strings.Join(diffs, "\n"))
	}
	return nil
}

func parseACL(acl string) map[string]string {
	out := map[string]string{}
	f := strings.Split(acl, "\t")
	for i := 0; i+1 < len(f); i += 2 {
		out[f[i]] = f[i+1]
	}
	return out
}

func runE2ECheck(ctx context.Context, t *testing.T, m *murder.Murder, port int) {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "..", "internal", "murder", "testdata", "e2e-check.py")
	cmd := exec.CommandContext(ctx, "python3", script)
	cmd.Env = os.Environ()
	for k, v := range m.Env() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, fmt.Sprintf("MUPDATE_CHECK_PORT=%d", port))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("e2e-check.py against Rookery: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "E2E OK") {
		t.Fatalf("e2e-check.py did not print E2E OK:\n%s", out)
	}
}
