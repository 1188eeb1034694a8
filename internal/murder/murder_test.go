package murder

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFullMurderWorksEndToEnd starts the real master, be1, be2 and fe on
// free ports and proves the harness: the end-to-end check (the Go form of
// testdata/e2e-check.py), ctl_mboxlist -m and -d, mupdatetest, and a role
// restart.
func TestFullMurderWorksEndToEnd(t *testing.T) {
	m := Start(t, Options{WithPOP3: true})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	tag, err := m.CheckE2E(ctx, m.MasterAddr())
	if err != nil {
		t.Fatalf("CheckE2E via the real master: %v", err)
	}

	t.Run("CtlMboxlistPushSucceedsAndSlaveHasTheMailbox", func(t *testing.T) {
		if _, err := m.CtlMboxlist(ctx, RoleBE1, "-m"); err != nil {
			t.Fatalf("ctl_mboxlist -m on be1: %v", err)
		}
		dump, err := m.CtlMboxlist(ctx, RoleFE, "-d")
		if err != nil {
			t.Fatalf("ctl_mboxlist -d on fe: %v", err)
		}
		if !strings.Contains(dump, `"user.alice.`+tag+`"`) {
			t.Fatalf("frontend slave's mailboxes.db lacks user.alice.%s:\n%s", tag, dump)
		}
	})

	t.Run("MupdateTestListsBackendEntries", func(t *testing.T) {
		port, err := strconv.Atoi(m.Env()["MASTER_PORT"])
		if err != nil {
			t.Fatalf("MASTER_PORT: %v", err)
		}
		out, err := m.MupdateTest(ctx, port, MupdateUser, MupdatePass, "L1 LIST {4+}\r\nbe1!\r\n")
		if err != nil {
			t.Fatalf("mupdatetest: %v\n%s", err, out)
		}
		if !strings.Contains(out, "user.alice."+tag) || !strings.Contains(out, `L1 OK "list complete"`) {
			t.Fatalf("mupdatetest LIST be1! output lacks user.alice.%s:\n%s", tag, out)
		}
	})

	t.Run("POP3ThroughFrontendReachesBackendInbox", func(t *testing.T) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", m.POP3Addr(RoleFE))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(conn)
		for _, step := range []struct{ send, want string }{
			{"", "+OK"}, {"USER alice", "+OK"}, {"PASS alicepw", "+OK"}, {"STAT", "+OK "}, {"QUIT", "+OK"},
		} {
			if step.send != "" {
				if _, err := conn.Write([]byte(step.send + "\r\n")); err != nil {
					t.Fatal(err)
				}
			}
			line, err := br.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, step.want) {
				t.Fatalf("POP3 %q -> %q, %v; want %s", step.send, line, err, step.want)
			}
			if step.send == "STAT" && strings.HasPrefix(line, "+OK 0 ") {
				t.Fatalf("POP3 STAT through fe = %q, want alice's delivered message", line)
			}
		}
	})

	t.Run("RestartedFrontendResyncs", func(t *testing.T) {
		from := m.LogSize(RoleFE)
		if err := m.Restart(ctx, RoleFE); err != nil {
			t.Fatalf("Restart fe: %v", err)
		}
		if err := m.WaitForLog(ctx, RoleFE, "mailbox list synchronization complete", from); err != nil {
			t.Fatal(err)
		}
		if out, err := m.Status(ctx); err != nil {
			t.Fatalf("status after restart: %v\n%s", err, out)
		}
	})
}

func TestUnavailableSkipsLocallyButFailsInCI(t *testing.T) {
	cause := errors.New("must run as root")
	tests := []struct {
		name     string
		ci       string
		err      error
		wantSkip bool
		wantMsg  bool
	}{
		{"CyrusRunnable", "true", nil, false, false},
		{"CyrusRunnableLocally", "", nil, false, false},
		{"LocalRunSkips", "", cause, true, true},
		{"CIFalseSkips", "false", cause, true, true},
		{"CITrueFails", "true", cause, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			skip, msg := unavailable(tc.ci, tc.err)
			if skip != tc.wantSkip || (msg != "") != tc.wantMsg {
				t.Fatalf("unavailable(%q, %v) = %v, %q; want skip=%v msg=%v", tc.ci, tc.err, skip, msg, tc.wantSkip, tc.wantMsg)
			}
			if tc.err != nil && !strings.Contains(msg, tc.err.Error()) {
				t.Fatalf("message %q does not give the reason %q", msg, tc.err)
			}
		})
	}
}

func TestParseEnvReadsKeyValueLines(t *testing.T) {
	got := parseEnv("murder-up: noise\nMASTER_PORT=13905\nBE_MUPDATE=127.0.0.1:7000\nEMPTY=\n bad key=x\n")
	want := map[string]string{"MASTER_PORT": "13905", "BE_MUPDATE": "127.0.0.1:7000", "EMPTY": ""}
	if len(got) != len(want) {
		t.Fatalf("parseEnv = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("parseEnv[%s] = %q, want %q", k, got[k], v)
		}
	}
}

func TestOptionsEnvironPointsRolesAtTheirMupdateServers(t *testing.T) {
	ports := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"DefaultsToOwnMaster", Options{}, []string{
			"BE_MUPDATE_HOST=127.0.0.1", "BE_MUPDATE_PORT=1", "FE_MUPDATE_PORT_TARGET=1",
			"MURDER_ROLES=master be1 be2 fe", "WITH_POP3=0", "MUPDATE_USER=mupdate"}},
		{"SeparateBackendAndFrontendTargets", Options{
			Roles:          []string{RoleFE, RoleBE1}, // reordered to start order
			BackendMupdate: "127.0.0.1:7000", FrontendMupdate: "127.0.0.1:7001", WithPOP3: true,
			Names: Names{BE1: "b1"},
		}, []string{
			"BE_MUPDATE_PORT=7000", "FE_MUPDATE_HOST=127.0.0.1", "FE_MUPDATE_PORT_TARGET=7001",
			"MURDER_ROLES=be1 fe", "WITH_POP3=1", "BE1_NAME=b1"}},
		{"PushAtStartAndExtraHostMap", Options{PushAtStart: true, FrontendExtraHostMap: "x:imap=1", MupdateUser: "u", MupdatePass: "p"}, []string{
			"MUPDATE_PUSH_AT_START=1", "FE_EXTRA_HOSTMAP=x:imap=1", "MUPDATE_USER=u", "MUPDATE_PASS=p"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := strings.Join(tc.opts.environ("/tmp/x", ports), "\n") + "\n"
			for _, w := range tc.want {
				if !strings.Contains(env, w+"\n") {
					t.Errorf("environment lacks %s:\n%s", w, env)
				}
			}
		})
	}
}

func TestTraversableRejectsClosedParent(t *testing.T) {
	base := t.TempDir()
	closed := filepath.Join(base, "closed")
	inner := filepath.Join(closed, "inner")
	if err := os.MkdirAll(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	if traversable(inner) {
		t.Fatalf("%s reported traversable below a 0700 directory", inner)
	}
	if !traversable("/") {
		t.Fatal("/ not traversable")
	}
}
