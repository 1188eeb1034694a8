package gateway

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
)

// TestPOP3WithPythonPoplib logs in through the gateway with Python's
// poplib (USER/PASS, AUTH PLAIN, STLS) and retrieves a message delivered
// through the gateway's LMTP, so the bytes went MTA -> gateway -> backend
// -> gateway -> POP3 client.
func TestPOP3WithPythonPoplib(t *testing.T) {
	m := murder(t)
	g := startGateway(t, testConfig(m), replicaFromMaster(t, m))
	msgIDs := map[string]string{}
	for _, u := range []string{"alice", "bob"} {
		msgIDs[u] = fmt.Sprintf("<pop-%s-%d@gw.test>", u, time.Now().UnixNano())
		tp := lmtpClient(t, g.lmtp)
		lmtpCmd(t, tp, 250, "LHLO mta.test")
		lmtpCmd(t, tp, 250, "MAIL FROM:<sender@example.com>")
		lmtpCmd(t, tp, 250, "RCPT TO:<%s@example.com>", u)
		lmtpCmd(t, tp, 354, "DATA")
		w := tp.DotWriter()
		w.Write([]byte(message(msgIDs[u])))
		w.Close()
		if _, _, err := tp.ReadResponse(250); err != nil {
			t.Fatal(err)
		}
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, g.caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	host, port := splitAddr(t, g.pop3)
	tests := []struct {
		name, login, user string
	}{
		{"USER/PASS", `p.user("alice"); print(p.pass_("alicepw"))`, "alice"},
		{"AUTH PLAIN with initial response", `print(p._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0bob\0bobpw").decode()))`, "bob"},
		{"AUTH PLAIN with continuation", `p._putcmd("AUTH PLAIN"); print(p._getline()); print(p._shortcmd(base64.b64encode(b"\0bob\0bobpw").decode()))`, "bob"},
		{"STLS then USER/PASS", `ctx = ssl.create_default_context(cafile=` + fmt.Sprintf("%q", ca) + `); ctx.check_hostname = False; p.stls(ctx); p.user("alice"); print(p.pass_("alicepw"))`, "alice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			script := fmt.Sprintf(`
import poplib, base64, ssl
p = poplib.POP3(%q, %s, timeout=30)
%s
n, size = p.stat()
resp, lines, octets = p.retr(n)
print("LAST", b"\r\n".join(lines).decode())
p.quit()
`, host, port, tc.login)
			out, err := exec.Command("python3", "-c", script).CombinedOutput()
			if err != nil {
				t.Fatalf("python: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "Mailbox locked and ready") {
				t.Errorf("login answer should be the backend's: %s", out)
			}
			if !strings.Contains(string(out), "Message-ID: "+msgIDs[tc.user]) {
				t.Errorf("RETR of the newest message did not return %s:\n%s", msgIDs[tc.user], out)
			}
		})
	}
}

func TestPOP3LoginFailures(t *testing.T) {
	m := murder(t)
	rep := replicaFromMaster(t, m)
	setEntry(rep, "user.moving", "be1!default", fsm.StateReserved)
	g := startGateway(t, testConfig(m), rep)
	for _, tc := range []struct {
		name, user, pass, want string
	}{
		{"unknown user", "nobody", "x", "-ERR [AUTH]"},
		{"RESERVED INBOX", "moving", "x", "-ERR [SYS/TEMP]"},
		{"wrong password at the backend", "alice", "wrong", "-ERR [AUTH]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, g.pop3)
			c.expect("+OK")
			c.send("USER " + tc.user + "\r\n")
			c.expect("+OK")
			c.send("PASS " + tc.pass + "\r\n")
			c.expect(tc.want)
			c.send("QUIT\r\n")
			c.expect("+OK")
		})
	}
}
