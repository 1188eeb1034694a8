package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/fsm"
)

// restoreRun runs rookeryd snapshot-restore in-process.
func restoreRun(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(append([]string{"snapshot-restore"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestSnapshotRestoreSeedsANewClusterThatContinuesAboveTheSnapshot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	old := apitest.Start(t, apitest.Options{})
	cl, err := client.Dial(old.Endpoints(), client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, w := range []func() (uint64, error){
		func() (uint64, error) { return cl.Activate(ctx, "user.alice", "imap-be01!default", "alice\tlrs\t") },
		func() (uint64, error) { return cl.Reserve(ctx, "user.bob", "imap-be02!default") },
		func() (uint64, error) { return cl.Deactivate(ctx, "user.alice", "imap-be03!default") },
	} {
		if _, err := w(); err != nil {
			t.Fatal(err)
		}
	}
	snap := filepath.Join(t.TempDir(), "backup.snap")
	f, err := os.Create(snap)
	if err != nil {
		t.Fatal(err)
	}
	snapRev, _, err := cl.Snapshot(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	restored := apitest.Start(t, apitest.Options{Prepare: func(peers []cluster.Peer, dirs []string) error {
		var list []string
		for _, p := range peers {
			list = append(list, fmt.Sprintf("%s=%s/%s", p.ID, p.RaftAddr, p.APIAddr))
		}
		for _, d := range dirs {
			// FILE after the flags, as well as before.
			if code, out, errs := restoreRun("--data-dir", d, "--peers", strings.Join(list, ", "), snap); code != 0 || !strings.Contains(out, fmt.Sprintf("revision %d, 2 mailboxes", snapRev)) {
				return fmt.Errorf("snapshot-restore: exit %d: %s%s", code, out, errs)
			}
		}
		if code, _, errs := restoreRun(snap, "--data-dir", dirs[0], "--peers", strings.Join(list, ",")); code != 1 || !strings.Contains(errs, "empty data dir") {
			return fmt.Errorf("restore over a seeded dir: exit %d %s", code, errs)
		}
		return nil
	}})
	rc, err := client.Dial(restored.Endpoints(), client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	e, _, err := rc.Get(ctx, "user.alice", false)
	if err != nil || e.State != fsm.StateReserved || e.Location != "imap-be03!default" {
		t.Fatalf("user.alice in the restored cluster: %+v, %v", e, err)
	}
	rev, err := rc.Activate(ctx, "user.dave", "imap-be01!default", "dave\tlrs\t")
	if err != nil || rev <= snapRev {
		t.Fatalf("write to the restored cluster: revision %d (snapshot at %d), %v", rev, snapRev, err)
	}
}

func TestSnapshotRestoreRefusesBadInvocations(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"no file prints the procedure", nil, 2, "Restoring a cluster from a snapshot"},
		{"missing peers", []string{"f", "--data-dir", "d"}, 2, "--data-dir and --peers are required"},
		{"two files", []string{"f", "g", "--data-dir", "d", "--peers", "n1=127.0.0.1:1/127.0.0.1:2"}, 2, "want one FILE, got 2"},
		{"malformed peer", []string{"f", "--data-dir", "d", "--peers", "n1=127.0.0.1:1"}, 2, `--peers: "n1=127.0.0.1:1" is not id=raft_addr/grpc_addr`},
		{"peer listed twice", []string{"f", "--data-dir", "d", "--peers", "n1=127.0.0.1:1/127.0.0.1:2,n1=127.0.0.1:3/127.0.0.1:4"}, 2, `node "n1" listed twice`},
		{"unknown flag", []string{"f", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{"missing file", []string{"/nonexistent/backup.snap", "--data-dir", "d", "--peers", "n1=127.0.0.1:1/127.0.0.1:2"}, 1, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := restoreRun(tc.args...)
			if code != tc.code || !strings.Contains(out+errs, tc.says) {
				t.Fatalf("exit %d, output %q%q; want exit %d mentioning %q", code, out, errs, tc.code, tc.says)
			}
		})
	}
	// A file that is not a snapshot leaves the data dir empty.
	junk := filepath.Join(t.TempDir(), "junk.snap")
	os.WriteFile(junk, []byte("this is not a snapshot"), 0o600)
	dir := t.TempDir()
	if code, _, errs := restoreRun(junk, "--data-dir", dir, "--peers", "n1=127.0.0.1:1/127.0.0.1:2"); code != 1 || !strings.Contains(errs, "snapshot") {
		t.Fatalf("junk snapshot: exit %d %s", code, errs)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a refused restore wrote into the data dir: %v", ents)
	}
}
