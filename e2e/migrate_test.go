package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/mupdateclient"
	"github.com/rookery/rookery/internal/murder"
	"github.com/rookery/rookery/internal/testcluster"
)

// buildRookeryctl compiles the operator tool the runbook uses.
func buildRookeryctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rookeryctl")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/rookery/rookery/cmd/rookeryctl").CombinedOutput(); err != nil {
		t.Fatalf("build rookeryctl: %v\n%s", err, out)
	}
	return bin
}

// lockedBuffer collects a process's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func ctlEnv(rc *testcluster.Cluster) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(),
		"ROOKERY_ENDPOINTS=" + strings.Join(rc.GRPCAddrs(), ","), "ROOKERY_TOKEN=" + rc.Token,
		"ROOKERY_IMPORT_PASSWORD=" + murder.MupdatePass}
}

// masterList is what the Cyrus master holds, by name.
func masterList(ctx context.Context, t *testing.T, addr string) map[string]mupdateclient.Entry {
	t.Helper()
	mc, err := mupdateclient.Dial(ctx, addr, mupdateclient.Config{User: murder.MupdateUser, Password: murder.MupdatePass})
	if err != nil {
		t.Fatalf("dial the Cyrus master: %v", err)
	}
	defer mc.Close()
	list, err := mc.List(ctx, "")
	if err != nil {
		t.Fatalf("LIST on the Cyrus master: %v", err)
	}
	out := map[string]mupdateclient.Entry{}
	for _, e := range list {
		out[e.Name] = e
	}
	return out
}

// sameAsMaster reports how Rookery's directory differs from the master's.
func sameAsMaster(master map[string]mupdateclient.Entry, dir map[string]fsm.Entry) error {
	var diffs []string
	for name, m := range master {
		d, ok := dir[name]
		switch {
		case !ok:
			diffs = append(diffs, "rookery lacks "+name)
		case d.Location != m.Location || (d.State == fsm.StateReserved) != m.Reserved || (!m.Reserved && d.ACL != m.ACL):
			diffs = append(diffs, fmt.Sprintf("%s: master %+v, rookery %+v", name, m, d))
		}
	}
	for name := range dir {
		if _, ok := master[name]; !ok {
			diffs = append(diffs, "rookery has extra "+name)
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		return fmt.Errorf("directory differs from the Cyrus master:\n%s", strings.Join(diffs, "\n"))
	}
	return nil
}

// TestMoveALiveMurderOntoRookery follows the README runbook "Moving a
// murder onto Rookery" with real Cyrus: a master, two backends and a
// frontend run; `rookeryctl import --from-mupdate --follow` copies the
// master and mirrors it while mailboxes keep being created and deleted on
// it; the frontend, then be1, then be2 are repointed to Rookery (be2 still
// writing to the old master meanwhile); the mirror is stopped. Every
// mailbox made before, during and after the cut-over ends up right, and
// the frontend sees them all.
func TestMoveALiveMurderOntoRookery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	m := murder.Start(t, murder.Options{})
	be1 := dialIMAP(t, m.IMAPAddr(murder.RoleBE1), murder.AdminUser, murder.AdminPass)
	be2 := dialIMAP(t, m.IMAPAddr(murder.RoleBE2), murder.AdminUser, murder.AdminPass)
	for _, c := range []struct {
		s   *imapSession
		box string
	}{{be1, "user/alice"}, {be1, "user/alice/Sent"}, {be2, "user/bob"}, {be2, "user/bob/old"}} {
		c.s.mustOK("CREATE " + c.box)
	}
	be1.mustOK("SETACL user/alice/Sent anyone lrs")

	rc := testcluster.Start(t, testcluster.Options{})
	cl := rc.Client()
	bin := buildRookeryctl(t)

	var stdout, stderr lockedBuffer
	imp := exec.Command(bin, "import", "--from-mupdate", m.MasterAddr(), "--user", murder.MupdateUser, "--follow")
	imp.Env = ctlEnv(rc)
	imp.Stdout, imp.Stderr = &stdout, &stderr
	if err := imp.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- imp.Wait() }()
	t.Cleanup(func() {
		if imp.ProcessState == nil {
			imp.Process.Kill()
			<-exited
		}
		t.Logf("rookeryctl import output:\n%s%s", stdout.String(), stderr.String())
	})
	waitFor(ctx, t, "import reaches follow mode", func() error {
		if !strings.Contains(stderr.String(), "following the master's changes") {
			return fmt.Errorf("not yet: %s", stderr.String())
		}
		return nil
	})
	waitFor(ctx, t, "dump copied", func() error { return sameAsMaster(masterList(ctx, t, m.MasterAddr()), listDirectory(ctx, t, cl)) })

	t.Run("changes on the old master are mirrored", func(t *testing.T) {
		be1.mustOK("CREATE user/carol")
		be1.mustOK("SETACL user/alice anyone lr")
		be2.mustOK("SETACL user/bob/old admin lrswipkxtecda")
		be2.mustOK("DELETE user/bob/old") // delayed delete: DELETE, then a DELETED.* mailbox
		be2.mustOK("RENAME user/bob user/bob be1!default")
		waitFor(ctx, t, "mirror catches up", func() error {
			return sameAsMaster(masterList(ctx, t, m.MasterAddr()), listDirectory(ctx, t, cl))
		})
		dir := listDirectory(ctx, t, cl)
		if _, ok := dir["user.bob.old"]; ok {
			t.Error("the deleted user.bob.old is still in Rookery")
		}
		if e := dir["user.bob"]; e.Location != "be1!default" || e.State != fsm.StateActive {
			t.Errorf("user.bob after its XFER to be1: %+v", e)
		}
		if !strings.Contains(dir["user.alice"].ACL, "anyone\tlr\t") {
			t.Errorf("user.alice lacks the SETACL: %q", dir["user.alice"].ACL)
		}
		waitFor(ctx, t, "progress with the lag", func() error {
			if !strings.Contains(stderr.String(), "mirrored changes:") || !strings.Contains(stderr.String(), " lag ") {
				return fmt.Errorf("no lag in the progress output: %s", stderr.String())
			}
			return nil
		})
	})

	t.Run("cut over one by one while both agree", func(t *testing.T) {
		host, port, _ := net.SplitHostPort(rc.Nodes[2].MupdateAddr)
		if err := m.Restart(ctx, murder.RoleFE, "FE_MUPDATE_HOST="+host, "FE_MUPDATE_PORT_TARGET="+port); err != nil {
			t.Fatalf("repoint the frontend: %v", err)
		}
		host, port, _ = net.SplitHostPort(rc.Nodes[0].MupdateAddr)
		if err := m.Restart(ctx, murder.RoleBE1, "BE_MUPDATE_HOST="+host, "BE_MUPDATE_PORT="+port); err != nil {
			t.Fatalf("repoint be1: %v", err)
		}
		be1 = dialIMAP(t, m.IMAPAddr(murder.RoleBE1), murder.AdminUser, murder.AdminPass)
		be1.mustOK("CREATE user/dave") // straight into Rookery
		be2.mustOK("CREATE user/erin") // still through the old master, mirrored
		waitFor(ctx, t, "user.erin mirrored", func() error {
			if _, _, err := cl.Get(ctx, "user.erin", false); err != nil {
				return err
			}
			return nil
		})
		host, port, _ = net.SplitHostPort(rc.Nodes[1].MupdateAddr)
		if err := m.Restart(ctx, murder.RoleBE2, "BE_MUPDATE_HOST="+host, "BE_MUPDATE_PORT="+port); err != nil {
			t.Fatalf("repoint be2: %v", err)
		}
		imp.Process.Signal(syscall.SIGINT)
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("import --follow after SIGINT: %v\n%s", err, stderr.String())
			}
		case <-ctx.Done():
			t.Fatal("import --follow did not stop on SIGINT")
		}
		if !strings.Contains(stdout.String(), "imported: ") {
			t.Errorf("no summary: %s", stdout.String())
		}
		be2 = dialIMAP(t, m.IMAPAddr(murder.RoleBE2), murder.AdminUser, murder.AdminPass)
		be2.mustOK("CREATE user/frank")
	})

	t.Run("every mailbox is right and the frontend sees it", func(t *testing.T) {
		dir := listDirectory(ctx, t, cl)
		want := map[string]string{
			"user.alice": "be1!default", "user.alice.Sent": "be1!default", "user.bob": "be1!default",
			"user.carol": "be1!default", "user.dave": "be1!default", "user.erin": "be2!default", "user.frank": "be2!default",
		}
		for name, loc := range want {
			if e, ok := dir[name]; !ok || e.Location != loc || e.State != fsm.StateActive {
				t.Errorf("%s = %+v, want ACTIVE at %s", name, e, loc)
			}
		}
		waitFor(ctx, t, "fe mailboxes.db equals Rookery", func() error {
			out, err := m.CtlMboxlist(ctx, murder.RoleFE, "-d")
			if err != nil {
				return fmt.Errorf("ctl_mboxlist -d on fe: %v", err)
			}
			return compareSlaveDump(out, listDirectory(ctx, t, cl))
		})
		fe := dialIMAP(t, m.IMAPAddr(murder.RoleFE), murder.AdminUser, murder.AdminPass)
		for _, box := range []string{"user/carol", "user/dave", "user/erin", "user/frank"} {
			if _, list := fe.do(`LIST "" "` + box + `"`); len(list) == 0 {
				t.Errorf("the frontend does not list %s", box)
			}
		}
	})
}

// TestImportFromACtlMboxlistDump loads the dump the real master's own
// `ctl_mboxlist -d` prints into an empty cluster, and refuses to load it
// again without a merge mode.
func TestImportFromACtlMboxlistDump(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	m := murder.Start(t, murder.Options{Roles: []string{murder.RoleMaster}})
	mc, err := mupdateclient.Dial(ctx, m.MasterAddr(), mupdateclient.Config{User: murder.MupdateUser, Password: murder.MupdatePass})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	for i := 0; i < 200; i++ {
		name, loc := fmt.Sprintf("user.u%03d", i), fmt.Sprintf("be%d!default", i%2+1)
		if err := mc.Reserve(ctx, name, loc); err != nil {
			t.Fatal(err)
		}
		if i%20 == 0 {
			continue // left RESERVED
		}
		if err := mc.Activate(ctx, name, loc, fmt.Sprintf("u%03d\tlrswipkxtecdan\tanyone\tp\t", i)); err != nil {
			t.Fatal(err)
		}
	}
	dump, err := m.CtlMboxlist(ctx, murder.RoleMaster, "-d")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "mboxlist.json")
	os.WriteFile(file, []byte(dump), 0o600)

	rc := testcluster.Start(t, testcluster.Options{})
	bin := buildRookeryctl(t)
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = ctlEnv(rc)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("import", "--from-dump", file)
	if err != nil || !strings.Contains(out, "imported: 200 written") {
		t.Fatalf("import --from-dump: %v\n%s", err, out)
	}
	if err := sameAsMaster(masterList(ctx, t, m.MasterAddr()), listDirectory(ctx, t, rc.Client())); err != nil {
		t.Fatal(err)
	}
	if out, err := run("import", "--from-dump", file); err == nil || !strings.Contains(out, "not empty") {
		t.Fatalf("second import without --merge: %v\n%s", err, out)
	}
}
