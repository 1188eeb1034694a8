package gateway

import (
	"fmt"
	"net/textproto"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/rookery/rookery/fsm"
)

// loginDirect logs in to a backend directly, not through the gateway.
func loginDirect(tb testing.TB, b cyrusServer, user, pass string) *imapclient.Client {
	tb.Helper()
	c, err := imapclient.DialInsecure(b.IMAP, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.Login(user, pass).Wait(); err != nil {
		c.Close()
		tb.Fatalf("direct login %s on %s: %v", user, b.Name, err)
	}
	return c
}

// countMessageID logs in to a backend directly (not through the gateway)
// and counts INBOX messages with the given Message-ID.
func countMessageID(tb testing.TB, b cyrusServer, user, pass, msgID string) int {
	tb.Helper()
	c := loginDirect(tb, b, user, pass)
	defer c.Close()
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		tb.Fatal(err)
	}
	data, err := c.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: msgID}}}, nil).Wait()
	if err != nil {
		tb.Fatal(err)
	}
	c.Logout().Wait()
	return len(data.AllSeqNums())
}

func message(msgID string) string {
	return "From: sender@example.com\r\nTo: rcpts@example.com\r\nSubject: gateway test\r\n" +
		"Message-ID: " + msgID + "\r\n\r\nHello through the gateway.\r\n.leading dot stays\r\n"
}

func lmtpCmd(tb testing.TB, tp *textproto.Conn, code int, format string, args ...any) string {
	tb.Helper()
	if err := tp.PrintfLine(format, args...); err != nil {
		tb.Fatal(err)
	}
	_, msg, err := tp.ReadResponse(code)
	if err != nil {
		tb.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
	return msg
}

func TestLMTPDeliversToEachBackendWithPerRecipientReplies(t *testing.T) {
	m := murder(t)
	g := startGateway(t, testConfig(m), replicaFromMaster(t, m))
	tp := lmtpClient(t, g.lmtp)
	lmtpCmd(t, tp, 250, "LHLO mta.test")
	lmtpCmd(t, tp, 250, "MAIL FROM:<sender@example.com>")
	lmtpCmd(t, tp, 250, "RCPT TO:<alice@example.com>")
	lmtpCmd(t, tp, 250, "RCPT TO:<bob@example.com>")
	if err := tp.PrintfLine("RCPT TO:<nobody@example.com>"); err != nil {
		t.Fatal(err)
	}
	if code, msg, _ := tp.ReadResponse(0); code != 550 || !strings.HasPrefix(msg, "5.1.1") {
		t.Fatalf("unknown recipient: %d %s, want 550 5.1.1", code, msg)
	}
	lmtpCmd(t, tp, 354, "DATA")
	msgID := fmt.Sprintf("<lmtp-%d@gw.test>", time.Now().UnixNano())
	w := tp.DotWriter()
	w.Write([]byte(message(msgID)))
	w.Close()
	expectBackendReplies(t, tp, []dataReply{{"alice@example.com", "be1"}, {"bob@example.com", "be2"}})
	lmtpCmd(t, tp, 221, "QUIT")
	if n := countMessageID(t, m.BE1, "alice", "alicepw", msgID); n != 1 {
		t.Errorf("alice has %d copies on be1, want 1", n)
	}
	if n := countMessageID(t, m.BE2, "bob", "bobpw", msgID); n != 1 {
		t.Errorf("bob has %d copies on be2, want 1", n)
	}
	mt := g.srv.Metrics()
	if mt.LMTPRecipientsOK != 2 || mt.LMTPRecipientsPermErr != 1 || mt.LMTPMessages != 1 {
		t.Errorf("metrics: %+v", mt)
	}
}

func TestLMTPRecipientOutcomes(t *testing.T) {
	m := murder(t)
	cfg := testConfig(m)
	cfg.Servers["down"] = ServerAddrs{LMTP: closedPort(t)}
	rep := replicaFromMaster(t, m)
	setEntry(rep, "user.moving", "be1!default", fsm.StateReserved)
	setEntry(rep, "user.lost", "down!default", fsm.StateActive)
	setEntry(rep, "user.stale", "be1!default", fsm.StateActive) // not on be1
	g := startGateway(t, cfg, rep)

	tests := []struct {
		name   string
		ready  bool
		rcpt   string
		code   int
		enhanc string
	}{
		{"reserved INBOX is temporary", true, "moving@example.com", 451, "4.2.0"},
		{"unreachable backend is temporary", true, "lost@example.com", 451, "4.4.1"},
		{"unknown user bounces when ready", true, "nobody@example.com", 550, "5.1.1"},
		{"unknown user is temporary before ready", false, "nobody@example.com", 451, "4.3.0"},
		{"known user still routes before ready", false, "alice@example.com", 250, "2."},
		{"backend's own refusal passes through", true, "stale@example.com", 550, "Mailbox unknown.  Either there is no mailbox associated with this\nname or you do not have authorization to see it.\n5.1.1 User unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep.SetReady(tc.ready)
			defer rep.SetReady(true)
			tp := lmtpClient(t, g.lmtp)
			lmtpCmd(t, tp, 250, "LHLO mta.test")
			lmtpCmd(t, tp, 250, "MAIL FROM:<sender@example.com>")
			tp.PrintfLine("RCPT TO:<%s>", tc.rcpt)
			code, msg, _ := tp.ReadResponse(0)
			if code != tc.code || !strings.HasPrefix(msg, tc.enhanc) { // textproto joins the lines of a reply with \n
				t.Fatalf("RCPT %s: %d %s, want %d %s", tc.rcpt, code, msg, tc.code, tc.enhanc)
			}
			lmtpCmd(t, tp, 221, "QUIT")
		})
	}
}

// dataReply is an accepted recipient and the backend that must answer
// for it after DATA.
type dataReply struct{ rcpt, server string }

// expectBackendReplies reads one DATA reply per accepted recipient, in RCPT
// order, and checks that each is its backend's own (Cyrus puts its
// SESSIONID, which names the backend, in it).
func expectBackendReplies(t *testing.T, tp *textproto.Conn, want []dataReply) {
	t.Helper()
	for _, w := range want {
		code, msg, err := tp.ReadResponse(250)
		if err != nil {
			t.Fatalf("DATA reply for %s: %d %s %v", w.rcpt, code, msg, err)
		}
		if !strings.Contains(msg, "<"+w.rcpt+">") || !strings.Contains(msg, "cyrus-"+w.server) {
			t.Fatalf("DATA reply %q: want the %s backend's reply for <%s>", msg, w.server, w.rcpt)
		}
	}
}

// TestLMTPWithPythonSmtplib delivers with Python's smtplib.LMTP, a client
// written independently of both go-smtp and this package, with full
// addresses and with the bare ones Cyrus lmtpd also takes (smtplib puts
// the addresses it is given on the wire as they are). One accepted
// recipient per case: smtplib reads a single reply after DATA, not LMTP's
// one per recipient.
func TestLMTPWithPythonSmtplib(t *testing.T) {
	m := murder(t)
	g := startGateway(t, testConfig(m), replicaFromMaster(t, m))
	host, port := splitAddr(t, g.lmtp)
	tests := []struct{ name, from, alice, ghost string }{
		{"full addresses", "sender@example.com", "alice@example.com", "ghost@example.com"},
		{"bare local parts", "postmaster", "alice", "ghost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgID := fmt.Sprintf("<py-%d@gw.test>", time.Now().UnixNano())
			script := fmt.Sprintf(`
import smtplib
l = smtplib.LMTP(%q, %s)
l.ehlo("py.test")
refused = l.sendmail(%q, [%q, %q], %q.encode())
print(sorted(refused.items()))
l.quit()
`, host, port, tt.from, tt.alice, tt.ghost, message(msgID))
			out, err := exec.Command("python3", "-c", script).CombinedOutput()
			if err != nil {
				t.Fatalf("python: %v\n%s", err, out)
			}
			want := fmt.Sprintf("[(%q, (550, b'5.1.1 User unknown'))]", tt.ghost)
			if strings.TrimSpace(string(out)) != strings.ReplaceAll(want, `"`, "'") {
				t.Fatalf("python refused: %s, want %s", out, want)
			}
			if n := countMessageID(t, m.BE1, "alice", "alicepw", msgID); n != 1 {
				t.Errorf("alice has %d copies, want 1", n)
			}
		})
	}
}

func TestLMTPEdgeCases(t *testing.T) {
	m := murder(t)
	cfg := testConfig(m)
	cfg.LMTP.MaxMessageBytes = 4096
	g := startGateway(t, cfg, replicaFromMaster(t, m))
	start := func(t *testing.T) *textproto.Conn {
		tp := lmtpClient(t, g.lmtp)
		lmtpCmd(t, tp, 250, "LHLO mta.test")
		lmtpCmd(t, tp, 250, "MAIL FROM:<sender@example.com>")
		return tp
	}
	t.Run("oversized message is refused for every recipient", func(t *testing.T) {
		tp := start(t)
		lmtpCmd(t, tp, 250, "RCPT TO:<alice@example.com>")
		lmtpCmd(t, tp, 250, "RCPT TO:<bob@example.com>")
		lmtpCmd(t, tp, 354, "DATA")
		w := tp.DotWriter()
		w.Write([]byte(message("<big@gw.test>") + strings.Repeat(strings.Repeat("y", 70)+"\r\n", 100)))
		w.Close()
		for i := 0; i < 2; i++ {
			if code, msg, _ := tp.ReadResponse(0); code != 552 {
				t.Fatalf("reply %d: %d %s, want 552", i, code, msg)
			}
		}
		// The session goes on and the next transaction works.
		lmtpCmd(t, tp, 250, "MAIL FROM:<sender@example.com>")
		lmtpCmd(t, tp, 250, "RCPT TO:<alice@example.com>")
		lmtpCmd(t, tp, 354, "DATA")
		w = tp.DotWriter()
		w.Write([]byte(message("<after-big@gw.test>")))
		w.Close()
		if _, _, err := tp.ReadResponse(250); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("BDAT is delivered as DATA to Cyrus", func(t *testing.T) {
		tp := start(t)
		lmtpCmd(t, tp, 250, "RCPT TO:<bob@example.com>")
		msgID := fmt.Sprintf("<bdat-%d@gw.test>", time.Now().UnixNano())
		body := message(msgID) // BDAT chunks are not dot-stuffed
		fmt.Fprintf(tp.W, "BDAT %d LAST\r\n%s", len(body), body)
		tp.W.Flush()
		if code, msg, err := tp.ReadResponse(250); err != nil || !strings.Contains(msg, "cyrus-be2") {
			t.Fatalf("BDAT: %d %s %v", code, msg, err)
		}
		if n := countMessageID(t, m.BE2, "bob", "bobpw", msgID); n != 1 {
			t.Fatalf("%d copies, want 1", n)
		}
	})
	t.Run("RSET abandons the backend transactions", func(t *testing.T) {
		tp := start(t)
		lmtpCmd(t, tp, 250, "RCPT TO:<alice@example.com>")
		lmtpCmd(t, tp, 250, "RSET")
		lmtpCmd(t, tp, 250, "MAIL FROM:<other@example.com>")
		lmtpCmd(t, tp, 250, "RCPT TO:<bob@example.com>")
		lmtpCmd(t, tp, 354, "DATA")
		msgID := fmt.Sprintf("<rset-%d@gw.test>", time.Now().UnixNano())
		w := tp.DotWriter()
		w.Write([]byte(message(msgID)))
		w.Close()
		if _, _, err := tp.ReadResponse(250); err != nil {
			t.Fatal(err)
		}
		if n := countMessageID(t, m.BE1, "alice", "alicepw", msgID); n != 0 {
			t.Fatalf("alice got the message after RSET (%d copies)", n)
		}
		if n := countMessageID(t, m.BE2, "bob", "bobpw", msgID); n != 1 {
			t.Fatalf("bob has %d copies, want 1", n)
		}
	})
}
