package mupdatecompat

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
)

// mupdatetestPath is Cyrus's own MUPDATE test client (Debian cyrus-clients).
const mupdatetestPath = "/usr/lib/cyrus/bin/mupdatetest"

// requireCyrusTool skips when a Cyrus binary is missing on a developer
// machine, but fails in CI, where the Cyrus packages are installed and a
// skip would hide that the real-Cyrus check did not run.
func requireCyrusTool(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing in CI: %v (install cyrus-clients)", path, err)
		}
		t.Skipf("%s not installed: %v", path, err)
	}
}

// transcriptState is the directory as it was when the mupdatetest
// transcript was captured (12:02:47).
func transcriptState() []fsm.Command {
	return []fsm.Command{
		{Op: fsm.OpActivate, Name: "user.alice", Location: "be1!default", ACL: "alice\tlrswipkxtecdan\t"},
		{Op: fsm.OpActivate, Name: "user.alice.Sent", Location: "be1!default", ACL: "alice\tlrswipkxtecdan\t"},
		{Op: fsm.OpActivate, Name: "shared1", Location: "be1!default", ACL: "anyone\tlrs\t"},
		{Op: fsm.OpActivate, Name: "user.bob", Location: "be2!default", ACL: "bob\tlrswipkxtecdan\tanyone\tp\t"},
		{Op: fsm.OpActivate, Name: "DELETED.tmpbox2.6B0AC2D9", Location: "be2!", ACL: "anyone\tlrs\tadmin\tlrswipkxtecda\t"},
	}
}

// runMupdatetest runs the real Cyrus client against the server with a
// command file piped after authentication, and returns its output.
func runMupdatetest(t *testing.T, env *testEnv, commands string, args ...string) string {
	t.Helper()
	_, port, _ := net.SplitHostPort(env.addr)
	file := filepath.Join(t.TempDir(), "commands")
	if err := os.WriteFile(file, []byte(commands), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append([]string{"-p", port, "-f", file}, args...)
	argv = append(argv, "127.0.0.1")
	out, err := exec.CommandContext(ctx, mupdatetestPath, argv...).CombinedOutput()
	t.Logf("mupdatetest %s:\n%s", strings.Join(argv, " "), out)
	if ctx.Err() != nil {
		t.Fatalf("mupdatetest hung: %v", ctx.Err())
	}
	if err != nil {
		t.Logf("mupdatetest exit: %v", err)
	}
	return string(out)
}

// transcriptCommands are the commands of mupdatetest-list-find-noop.txt.
const transcriptCommands = "L1 LIST\r\nF1 FIND \"user.alice\"\r\nF2 FIND \"nosuch\"\r\nL2 LIST \"be2!\"\r\nN1 NOOP\r\nQ1 LOGOUT\r\n"

// transcriptReplies returns the real master's replies to those commands,
// from the transcript file.
func transcriptReplies(t *testing.T) []string {
	t.Helper()
	var out []string
	started := false
	for _, ev := range loadTranscripts(t, "testdata/transcripts") {
		if !strings.HasPrefix(ev.conn, "mupdatetest-list-find-noop.txt#") || ev.dir != 'S' || ev.text == "<closed>" {
			continue
		}
		if strings.HasPrefix(ev.text, "L1 ") {
			started = true
		}
		if started {
			out = append(out, ev.text)
		}
	}
	if len(out) < 20 {
		t.Fatalf("transcript replies not found: %q", out)
	}
	return out
}

// serverLines drops mupdatetest's own lines (banner and SASL echo with
// "S: "/"C: " prefixes, status messages, the echo of piped commands) and
// keeps what the server sent after login.
func serverLines(out, commands string) []string {
	sent := map[string]bool{}
	for _, c := range strings.Split(commands, "\r\n") {
		sent[c] = true
	}
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSuffix(l, "\r")
		switch {
		case l == "", sent[l], strings.HasPrefix(l, "S: "), strings.HasPrefix(l, "C: "),
			strings.HasPrefix(l, "Authenticated."), strings.HasPrefix(l, "Security strength factor"),
			strings.HasPrefix(l, "Protection error"), strings.HasPrefix(l, "Connection closed"),
			!strings.Contains(l, " ") && len(l) > 8 && !strings.ContainsAny(l, "\t!."): // base64 SASL echo
			continue
		}
		keep = append(keep, l)
	}
	return keep
}

// TestRealCyrusMupdatetest runs Cyrus's mupdatetest, with Cyrus SASL's
// PLAIN and LOGIN clients and with its COMPRESS support, and compares what
// it received with what the real Cyrus master sent it in the transcript.
func TestRealCyrusMupdatetest(t *testing.T) {
	requireCyrusTool(t, mupdatetestPath)
	env := newEnv(t, nil)
	env.apply(transcriptState()...)
	want := transcriptReplies(t)
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"PLAIN", []string{"-a", "mupdate", "-w", "mupdatepw", "-m", "PLAIN"}},
		{"LOGIN", []string{"-a", "mupdate", "-w", "mupdatepw", "-m", "LOGIN"}},
		{"reader identity", []string{"-a", "fe", "-w", "fepw", "-m", "PLAIN"}},
		{"COMPRESS", []string{"-a", "mupdate", "-w", "mupdatepw", "-m", "PLAIN", "-q"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := runMupdatetest(t, env, transcriptCommands, tt.args...)
			if !strings.Contains(out, "Authenticated.") {
				t.Fatal("mupdatetest did not authenticate")
			}
			got := serverLines(out, transcriptCommands)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("mupdatetest received\n%s\nthe real master sent\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		out := runMupdatetest(t, env, "N1 NOOP\r\n", "-a", "mupdate", "-w", "wrong", "-m", "PLAIN")
		if strings.Contains(out, "Authenticated.") || !strings.Contains(out, `NO "authentication failure"`) {
			t.Fatal("mupdatetest logged in with a wrong password")
		}
	})
}
