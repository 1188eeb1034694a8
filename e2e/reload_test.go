package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/rookery/rookery/internal/mupdateclient"
	"github.com/rookery/rookery/internal/testcluster"
)

// TestSIGHUPReloadsUsersFile rotates the MUPDATE password of a backend
// identity without restarting any node: after SIGHUP the new password logs
// in and the old one is refused.
func TestSIGHUPReloadsUsersFile(t *testing.T) {
	rc := testcluster.Start(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	login := func(pass string) error {
		cfg := mupdateclient.DefaultConfig()
		cfg.Password = pass
		c, err := mupdateclient.Dial(ctx, rc.Nodes[0].MupdateAddr, cfg)
		if err != nil {
			return err
		}
		return c.Close()
	}
	if err := login("mupdatepw"); err != nil {
		t.Fatalf("login with the first password: %v", err)
	}
	rc.WriteUsers(map[string]string{"admin": "adminpw", "mupdate": "rotated-pw", "reader": "readerpw"})
	rc.Reload(0)
	deadline := time.Now().Add(10 * time.Second)
	for login("rotated-pw") != nil {
		if time.Now().After(deadline) {
			t.Fatal("the rotated password is still refused 10 s after SIGHUP")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := login("mupdatepw"); err == nil {
		t.Fatal("the old password still logs in after the reload")
	}
}
