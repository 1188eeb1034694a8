package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/cluster"
)

// buildCtl compiles rookeryctl into a temp dir: the tests run the real
// binary, as an operator would.
func buildCtl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rookeryctl")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type result struct {
	code           int
	stdout, stderr string
}

// ctl runs the binary with args; it never inherits ROOKERY_* settings.
func ctl(t *testing.T, bin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("rookeryctl %v hung", args)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
}

// expect checks the exit code and that stdout+stderr hold every fragment.
func (r result) expect(t *testing.T, what string, code int, fragments ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", what, r.code, code, r.stdout, r.stderr)
	}
	all := r.stdout + r.stderr
	for _, f := range fragments {
		if !strings.Contains(all, f) {
			t.Fatalf("%s: output lacks %q\nstdout: %s\nstderr: %s", what, f, r.stdout, r.stderr)
		}
	}
}

func TestRookeryctlAgainstARealCluster(t *testing.T) {
	bin := buildCtl(t)
	c := apitest.Start(t, apitest.Options{Cluster: func(_ int, cfg *cluster.Config) { cfg.WriteTimeout = time.Second }})
	eps := "--endpoints=" + strings.Join(c.Endpoints(), ",")
	follower := "--endpoints=" + c.Nodes[c.Follower()].APIAddr
	run := func(args ...string) result { return ctl(t, bin, append([]string{eps}, args...)...) }

	run("status").expect(t, "status", exitOK, "Leader", "Follower", c.Nodes[0].ID, c.Nodes[1].ID, c.Nodes[2].ID)
	run("activate", "user.alice", "imap-be01!default", "alice=lrswipkxtecdan anyone=p").expect(t, "activate", exitOK, "OK revision 1")
	run("reserve", "user.bob", "imap-be02!default").expect(t, "reserve", exitOK, "OK revision 2")
	run("activate", "example.com!user.carol", "imap-be02!", `carol\tlrs\t`).expect(t, "activate with tabs", exitOK, "OK revision 3")
	// Global flags after the command and its arguments work too.
	ctl(t, bin, "get", "user.alice", eps).expect(t, "get", exitOK, "ACTIVE", "imap-be01!default", "alice=lrswipkxtecdan anyone=p")
	run("get", "--stale", "user.bob").expect(t, "get --stale", exitOK, "RESERVED", "imap-be02!default")

	r := run("--output", "json", "get", "example.com!user.carol")
	r.expect(t, "get json", exitOK)
	var got struct {
		Mailbox struct {
			Name, State, Location, Acl string
		}
		Revision string
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.Mailbox.Acl != "carol\tlrs\t" || got.Mailbox.State != "MAILBOX_STATE_ACTIVE" {
		t.Fatalf("get json: %v %+v from %s", err, got, r.stdout)
	}

	run("list").expect(t, "list", exitOK, "user.alice", "user.bob", "example.com!user.carol", "(3 entries at revision 3)")
	run("list", "--location", "imap-be02").expect(t, "list --location", exitOK, "(2 entries")
	run("list", "--prefix", "user.", "--limit", "1").expect(t, "list --limit", exitOK, "(1 entries")
	r = run("list", "--prefix", "user.")
	if strings.Contains(r.stdout, "carol") {
		t.Fatalf("list --prefix user. shows another domain: %s", r.stdout)
	}
	// A cut listing says so, and how to go on.
	r = run("list", "--limit", "2")
	r.expect(t, "list --limit 2", exitOK, "(2 entries", "more entries follow; continue with --after ")
	next := r.stdout[strings.LastIndex(r.stdout, "--after ")+len("--after ") : strings.LastIndex(r.stdout, ")")]
	r = run("list", "--after", strings.Trim(next, "'"))
	r.expect(t, "list --after", exitOK, "(1 entries")
	if strings.Contains(r.stdout, "more entries follow") {
		t.Fatalf("complete listing hints at more: %s", r.stdout)
	}
	r = run("--output", "json", "list")
	var listed struct {
		Mailboxes []struct{ Name string }
		Revision  string
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed.Mailboxes) != 3 || listed.Revision != "3" {
		t.Fatalf("list json: %v %+v from %s", err, listed, r.stdout)
	}
	run("reservations").expect(t, "reservations", exitOK, "user.bob", "imap-be02!default", "(1 reservations at revision 3)")
	run("reservations", "--older-than", "1h").expect(t, "reservations --older-than", exitOK, "(0 reservations")

	// Operation errors: exit 1 with the directory's own words.
	run("get", "user.nobody").expect(t, "get missing", exitFailed, "mailbox doesn't exist")
	run("reserve", "user.alice", "imap-be09!default").expect(t, "reserve taken", exitFailed, "mailbox already exists")
	run("deactivate", "user.bob", "imap-be02!default").expect(t, "deactivate reserved", exitFailed, "mailbox not currently active")
	run("delete", "user.nobody").expect(t, "delete missing", exitFailed, "mailbox doesn't exist")
	run("deactivate", "user.alice", "imap-be03!default").expect(t, "deactivate", exitOK, "OK revision 4")
	run("delete", "user.bob").expect(t, "delete", exitOK, "OK revision 5")

	// The change feed from a revision, on a follower.
	r = ctl(t, bin, follower, "watch", "--from", "1", "--count", "4")
	r.expect(t, "watch", exitOK, "2\tRESERVE\tuser.bob", "3\tACTIVATE\texample.com!user.carol", "4\tDEACTIVATE\tuser.alice\tRESERVED\timap-be03!default (from imap-be01!default)", "5\tDELETE\tuser.bob")

	run("member", "list").expect(t, "member list", exitOK, "voter", "true", c.Nodes[0].APIAddr)
	// A leader-only operation sent to a follower is redirected to the leader.
	target := c.Nodes[c.Follower()].ID
	ctl(t, bin, follower, "member", "transfer-leader", target).expect(t, "transfer-leader", exitOK, "leader is now "+target)
	if c.Nodes[c.WaitLeader()].ID != target {
		t.Fatalf("leader is not %s after transfer-leader", target)
	}

	// Snapshot save, inspect, and restore into a brand-new cluster.
	snap := filepath.Join(t.TempDir(), "backup.snap")
	run("snapshot", "save", snap).expect(t, "snapshot save", exitOK, "saved snapshot at revision 5", "2 mailboxes")
	run("snapshot", "status", snap).expect(t, "snapshot status", exitOK, "revision", "5", "1 active, 1 reserved")
	restored := apitest.Start(t, apitest.Options{Prepare: func(peers []cluster.Peer, dirs []string) error {
		var list []string
		for _, p := range peers {
			list = append(list, fmt.Sprintf("%s=%s/%s", p.ID, p.RaftAddr, p.APIAddr))
		}
		for _, d := range dirs {
			r := ctl(t, bin, "snapshot", "restore", snap, "--data-dir", d, "--peers", strings.Join(list, ","))
			if r.code != exitOK {
				return fmt.Errorf("snapshot restore: exit %d: %s%s", r.code, r.stdout, r.stderr)
			}
		}
		r := ctl(t, bin, "snapshot", "restore", snap, "--data-dir", dirs[0], "--peers", strings.Join(list, ","))
		if r.code != exitFailed || !strings.Contains(r.stderr, "empty data dir") {
			return fmt.Errorf("restore over a seeded dir: exit %d %s", r.code, r.stderr)
		}
		return nil
	}})
	reps := "--endpoints=" + strings.Join(restored.Endpoints(), ",")
	ctl(t, bin, reps, "get", "user.alice").expect(t, "get from the restored cluster", exitOK, "RESERVED", "imap-be03!default")
	ctl(t, bin, reps, "activate", "user.dave", "imap-be01!default", "dave=lrs").expect(t, "write to the restored cluster", exitOK, "OK revision")
	r = ctl(t, bin, reps, "--output", "json", "get", "user.dave")
	if !strings.Contains(r.stdout, `"mod_revision":"`) || strings.Contains(r.stdout, `"mod_revision":"5"`) {
		t.Fatalf("restored cluster revision did not move past the snapshot: %s", r.stdout)
	}

	// Releasing a stuck reservation, only while it is the same one.
	run("reserve", "user.stuck", "imap-be01!default").expect(t, "reserve", exitOK)
	run("release", "example.com!user.carol").expect(t, "release of an active mailbox", exitFailed, "not reserved")
	run("release", "user.stuck", "--revision", "1").expect(t, "release of a changed reservation", exitFailed, "changed since the given revision")
	run("release", "user.stuck").expect(t, "release", exitOK, "OK released user.stuck")
	run("get", "user.stuck").expect(t, "get released", exitFailed, "mailbox doesn't exist")

	// No quorum: writes fail as unavailable (exit 3) and say so.
	c.Stop(0)
	c.Stop(1)
	r = ctl(t, bin, "--endpoints="+c.Nodes[2].APIAddr, "--timeout", "4s", "activate", "user.late", "imap-be01!default", "x=lrs")
	r.expect(t, "write without quorum", exitUnavailable, "unavailable")
}

func TestRookeryctlRejectsBadInputWithClearMessages(t *testing.T) {
	bin := buildCtl(t)
	cases := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"no command", nil, exitUsage, "usage: rookeryctl"},
		{"unknown command", []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"unknown flag", []string{"get", "--bogus", "x"}, exitUsage, "flag provided but not defined: -bogus"},
		{"missing argument", []string{"get"}, exitUsage, "want NAME"},
		{"extra argument", []string{"delete", "a", "b"}, exitUsage, "want NAME, got 2"},
		{"bad output", []string{"--output", "xml", "get", "x"}, exitUsage, "--output must be table or json"},
		{"cert without key", []string{"--cert", "c.pem", "get", "x"}, exitUsage, "--cert and --key go together"},
		{"bad acl", []string{"activate", "user.x", "be1!p", "alice"}, exitUsage, `ACL entry "alice" is not id=rights`},
		{"both filters", []string{"list", "--prefix", "a", "--location", "b"}, exitUsage, "cannot be combined"},
		{"bad member subcommand", []string{"member", "promote"}, exitUsage, `unknown subcommand "promote"`},
		{"bad snapshot subcommand", []string{"snapshot", "load", "f"}, exitUsage, `unknown subcommand "load"`},
		{"restore without peers", []string{"snapshot", "restore", "f", "--data-dir", "d"}, exitUsage, "--data-dir and --peers are required"},
		{"restore procedure", []string{"snapshot", "restore"}, exitUsage, "Restoring a cluster from a snapshot"},
		{"unreadable snapshot", []string{"snapshot", "status", "/nonexistent/file"}, exitFailed, "no such file"},
		{"unreachable endpoint", []string{"--endpoints", "127.0.0.1:1", "get", "user.x"}, exitUnavailable, "cluster unavailable"},
		{"unreachable status", []string{"--endpoints", "127.0.0.1:1", "status"}, exitUnavailable, "UNREACHABLE"},
		{"missing cacert", []string{"--cacert", "/nonexistent.pem", "get", "x"}, exitUsage, "--cacert"},
	}
	for _, tc := range cases {
		ctl(t, bin, tc.args...).expect(t, tc.name, tc.code, tc.says)
	}
	// A snapshot file that is not one is refused, not half-read.
	junk := filepath.Join(t.TempDir(), "junk.snap")
	os.WriteFile(junk, []byte("this is not a snapshot"), 0o600)
	ctl(t, bin, "snapshot", "status", junk).expect(t, "junk snapshot", exitFailed, junk)
}

func TestRookeryctlOverTLSWithTokensAndClientCertificates(t *testing.T) {
	bin := buildCtl(t)
	c, p := apitest.StartSecure(t, apitest.Options{})
	eps := "--endpoints=" + strings.Join(c.Endpoints(), ",")
	tlsArgs := []string{eps, "--cacert", p.CAFile}
	run := func(args ...string) result { return ctl(t, bin, append(slices.Clone(tlsArgs), args...)...) }

	run("--token", apitest.AdminCred, "reserve", "user.alice", "imap-be01!default").expect(t, "password as token", exitOK, "OK revision")
	run("--token", apitest.Token, "activate", "user.alice", "imap-be01!default", "alice=lrs").expect(t, "api token", exitOK, "OK revision")
	certFile, keyFile := p.Issue(t, apitest.AdminCertCN, x509.ExtKeyUsageClientAuth)
	run("--cert", certFile, "--key", keyFile, "delete", "user.alice").expect(t, "client certificate", exitOK, "OK revision")
	run("get", "user.alice").expect(t, "no credentials", exitFailed, "not authenticated")
	run("--token", "admin:wrong", "status").expect(t, "wrong password", exitFailed, "not authenticated", "invalid user name or password")
	run("--token", apitest.ReaderCred, "activate", "user.x", "imap-be01!default", "x=lrs").expect(t, "reader writes", exitFailed, "permission denied")
	// ROOKERY_TOKEN is read from the environment.
	cmd := exec.Command(bin, append(slices.Clone(tlsArgs), "get", "user.nobody")...)
	cmd.Env = []string{"ROOKERY_TOKEN=" + apitest.ReaderCred}
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != exitFailed || !strings.Contains(string(out), "mailbox doesn't exist") {
		t.Fatalf("ROOKERY_TOKEN: exit %d: %s", cmd.ProcessState.ExitCode(), out)
	}
	// Without the CA the server is not trusted; plaintext cannot talk TLS.
	ctl(t, bin, eps, "--token", apitest.ReaderCred, "--timeout", "2s", "get", "user.x").expect(t, "plaintext to TLS", exitUnavailable, "cluster unavailable")
	ctl(t, bin, eps, "--token", apitest.ReaderCred, "--cert", certFile, "--key", keyFile, "get", "user.x").expect(t, "unknown CA", exitUnavailable, "certificate")
	ctl(t, bin, eps, "--token", apitest.ReaderCred, "--insecure-skip-verify", "get", "user.x").expect(t, "insecure-skip-verify", exitFailed, "mailbox doesn't exist")
}
