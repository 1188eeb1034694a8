package e2e

import (
	"context"
	"net"
	"os"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/murder"
	"github.com/rookery/rookery/internal/testcluster"
)

// TestXFERBetweenBoundBackends moves a user from be1 to be2 with a real
// Cyrus XFER while each backend logs in to MUPDATE as its own identity,
// bound to its servername with mupdate.backend_servers. The state machine
// refuses a bound identity any write that touches another server's
// entries, except the destination's ACTIVATE of an entry the source has
// deactivated (fsm authorize); this test pins down that a real XFER needs
// exactly that, and records which identity wrote which step.
func TestXFERBetweenBoundBackends(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rc := testcluster.Start(t, testcluster.Options{
		Users:     map[string]string{"admin": "adminpw", "be1": "be1pw", "be2": "be2pw"},
		Admins:    []string{"admin", "be1", "be2"},
		ExtraArgs: []string{"-mupdate.backend_servers", "be1=be1,be2=be2"},
	})
	cl := rc.Client()
	// be1 talks to node 1, be2 to node 2: one of them is a follower.
	m := murder.Start(t, murder.Options{
		Roles:          []string{murder.RoleBE1, murder.RoleBE2},
		BackendMupdate: rc.Nodes[0].MupdateAddr,
		MupdateUser:    "be1", MupdatePass: "be1pw",
	})
	if err := m.Restart(ctx, murder.RoleBE2, "BE_MUPDATE_HOST=127.0.0.1",
		"BE_MUPDATE_PORT="+portOf(rc.Nodes[1].MupdateAddr), "MUPDATE_USER=be2", "MUPDATE_PASS=be2pw"); err != nil {
		t.Fatalf("restart be2 as identity be2: %v", err)
	}
	be1 := dialIMAP(t, m.IMAPAddr(murder.RoleBE1), murder.AdminUser, murder.AdminPass)
	be1.mustOK("CREATE user/carol")
	be1.mustOK("CREATE user/carol/Sent")
	be1.mustOK("SETACL user/carol/Sent anyone lrs")

	be1.mustOK("XFER user/carol be2")

	dir := listDirectory(ctx, t, cl)
	for _, n := range []string{"user.carol", "user.carol.Sent"} {
		if e := dir[n]; e.Location != "be2!default" || e.State != fsm.StateActive {
			t.Errorf("after XFER %s = %+v, want ACTIVE at be2!default", n, e)
		}
	}
	be2 := dialIMAP(t, m.IMAPAddr(murder.RoleBE2), murder.AdminUser, murder.AdminPass)
	be2.mustOK("SELECT user/carol/Sent")

	// Which identity wrote which step, from the nodes' debug logs.
	steps := xferSteps(t, rc, "user.carol")
	t.Logf("MUPDATE writes for user.carol: %q", steps)
	for _, want := range []string{
		"be1 RESERVE be1!default done",
		"be1 ACTIVATE be1!default done",
		"be1 DEACTIVATE be1!default done",
		"be2 ACTIVATE be2!default done",
	} {
		if !slices.Contains(steps, want) {
			t.Errorf("no MUPDATE write %q in the node logs", want)
		}
	}
}

var writeLine = regexp.MustCompile(`msg="mupdate write" .*?op=(\S+) name=(\S+) location=(\S+) identity=(\S+) result=(?:"([^"]*)"|(\S+))`)

// xferSteps returns "identity OP location result" for each MUPDATE write of
// name logged by any node, in each node's log order.
func xferSteps(t *testing.T, rc *testcluster.Cluster, name string) []string {
	var out []string
	for _, n := range rc.Nodes {
		b, err := os.ReadFile(n.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range writeLine.FindAllStringSubmatch(string(b), -1) {
			if m[2] != name {
				continue
			}
			out = append(out, m[4]+" "+m[1]+" "+m[3]+" "+m[5]+m[6])
		}
	}
	return out
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
