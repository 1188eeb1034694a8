package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/mupdateclient"
	"github.com/rookery/rookery/internal/testcluster"
)

// boundCluster starts three rookeryd processes where be1 and be2 are
// writers bound to servers be1 and be2 (mupdate.backend_servers).
func boundCluster(t *testing.T) *testcluster.Cluster {
	return testcluster.Start(t, testcluster.Options{
		Users:     map[string]string{"admin": "adminpw", "be1": "be1pw", "be2": "be2pw"},
		Admins:    []string{"admin", "be1", "be2"},
		ExtraArgs: []string{"-mupdate.backend_servers", "be1=be1,be2=be2"},
	})
}

func mupdateLogin(ctx context.Context, t *testing.T, addr, user, pass string) *mupdateclient.Client {
	t.Helper()
	cfg := mupdateclient.DefaultConfig()
	cfg.User, cfg.Password = user, pass
	c, err := mupdateclient.Dial(ctx, addr, cfg)
	if err != nil {
		t.Fatalf("MUPDATE login %s at %s: %v", user, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func grpcAs(t *testing.T, addr, cred string) *client.Client {
	t.Helper()
	cfg := client.DefaultConfig()
	cfg.Token = cred
	cl, err := client.Dial([]string{addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func isMupdateNO(err error, text string) bool {
	var se *mupdateclient.StatusError
	return errors.As(err, &se) && se.Status == "NO" && se.Text == text
}

// TestStaleFollowerDeleteRace moves a mailbox with the admin through the
// leader and, as soon as the leader acknowledges, has be1 delete it through
// a follower that may not have applied the move yet. The decision is taken
// on the committed entry, so a mailbox just moved to be2 is never deleted
// by be1 and one just moved to be1 always is, through MUPDATE and gRPC.
func TestStaleFollowerDeleteRace(t *testing.T) {
	const runs = 200
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rc := boundCluster(t)
	leader, err := rc.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % len(rc.Nodes)
	admin := rc.NodeClient(leader)
	followerAdmin := rc.NodeClient(follower)
	be1Mupdate := mupdateLogin(ctx, t, rc.Nodes[follower].MupdateAddr, "be1", "be1pw")
	be1GRPC := grpcAs(t, rc.Nodes[follower].GRPCAddr, "be1:be1pw")

	deleteVia := map[string]func(name string) (denied bool, err error){
		"MUPDATE": func(name string) (bool, error) {
			err := be1Mupdate.Delete(ctx, name)
			if isMupdateNO(err, "permission denied") {
				return true, nil
			}
			return false, err
		},
		"gRPC": func(name string) (bool, error) {
			_, err := be1GRPC.Delete(ctx, name)
			if status.Code(err) == codes.PermissionDenied {
				return true, nil
			}
			return false, err
		},
	}
	for via, del := range deleteVia {
		for _, dir := range []struct {
			desc     string
			from, to string
			denied   bool
		}{
			{"moved away from be1", "be1!default", "be2!default", true},
			{"moved to be1", "be2!default", "be1!default", false},
		} {
			t.Run(via+"/"+dir.desc, func(t *testing.T) {
				wrong := 0
				for i := range runs {
					name := fmt.Sprintf("user.race-%s-%t-%d", via, dir.denied, i)
					rev, err := admin.Activate(ctx, name, dir.from, "")
					if err != nil {
						t.Fatal(err)
					}
					// The follower knows the old location...
					if _, err := followerAdmin.WaitRevision(ctx, rev); err != nil {
						t.Fatal(err)
					}
					// ...and the leader has acknowledged the move.
					if _, err := admin.Activate(ctx, name, dir.to, ""); err != nil {
						t.Fatal(err)
					}
					denied, err := del(name)
					if err != nil {
						t.Fatalf("run %d: delete: %v", i, err)
					}
					if denied != dir.denied {
						wrong++
					}
					_, _, err = admin.Get(ctx, name, false)
					if exists := err == nil; exists != dir.denied {
						t.Fatalf("run %d: entry exists=%v after delete (denied=%v): %v", i, exists, denied, err)
					}
				}
				if wrong > 0 {
					t.Errorf("%d of %d deletes through the follower got the wrong answer (want denied=%v)", wrong, runs, dir.denied)
				}
			})
		}
	}
}

// TestBoundBackendCannotHijack: be1 may not take over, or reserve to
// itself, a mailbox that is ACTIVE on be2, through MUPDATE or gRPC, on the
// leader or a follower. The entry, ACL included, stays as it was.
func TestBoundBackendCannotHijack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rc := boundCluster(t)
	admin := rc.Client()
	const acl = "victim\tlrswipkxtecdan\t"
	for i, n := range rc.Nodes {
		victim := fmt.Sprintf("user.victim%d", i)
		if _, err := admin.Activate(ctx, victim, "be2!default", acl); err != nil {
			t.Fatal(err)
		}
		want, _, err := admin.Get(ctx, victim, false)
		if err != nil {
			t.Fatal(err)
		}
		be1 := mupdateLogin(ctx, t, n.MupdateAddr, "be1", "be1pw")
		be1GRPC := grpcAs(t, n.GRPCAddr, "be1:be1pw")
		for _, tc := range []struct {
			desc string
			call func() bool // reports a refusal
		}{
			{"MUPDATE ACTIVATE over it", func() bool {
				return isMupdateNO(be1.Activate(ctx, victim, "be1!default", "be1\tlrswipkxtecda\t"), "permission denied")
			}},
			{"MUPDATE DEACTIVATE to be1", func() bool {
				return isMupdateNO(be1.Deactivate(ctx, victim, "be1!default"), "permission denied")
			}},
			{"MUPDATE DELETE", func() bool { return isMupdateNO(be1.Delete(ctx, victim), "permission denied") }},
			{"gRPC Activate over it", func() bool {
				_, err := be1GRPC.Activate(ctx, victim, "be1!default", "be1\tlrswipkxtecda\t")
				return status.Code(err) == codes.PermissionDenied
			}},
			{"gRPC Deactivate to be1", func() bool {
				_, err := be1GRPC.Deactivate(ctx, victim, "be1!default")
				return status.Code(err) == codes.PermissionDenied
			}},
			{"gRPC Delete", func() bool {
				_, err := be1GRPC.Delete(ctx, victim)
				return status.Code(err) == codes.PermissionDenied
			}},
		} {
			if !tc.call() {
				t.Errorf("%s: be1 %s of a be2 mailbox was not refused", n.ID, tc.desc)
			}
			got, _, err := admin.Get(ctx, victim, false)
			if err != nil || got.State != fsm.StateActive || got.Location != want.Location || got.ACL != want.ACL {
				t.Fatalf("%s: after be1 %s: %+v (%v), want %+v", n.ID, tc.desc, got, err, want)
			}
		}
	}
}
