package gateway

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/rookery/rookery/fsm"
)

// TestBackendTLSModes puts one gateway ("outer") in front of another
// ("inner", in front of Cyrus) whose listeners speak TLS, so the outer
// gateway's backend side must use implicit TLS or STARTTLS and verify the
// inner gateway's certificate. The Cyrus test backends have no TLS, which
// is why a gateway stands in for a TLS-speaking backend here.
func TestBackendTLSModes(t *testing.T) {
	m := murder(t)
	inner := startGateway(t, testConfig(m), replicaFromMaster(t, m))
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, inner.caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode  string
		addrs ServerAddrs
	}{
		{BackendTLSImplicit, ServerAddrs{IMAP: inner.imaps}},
		{BackendTLSStartTLS, ServerAddrs{IMAP: inner.imap, POP3: inner.pop3, LMTP: inner.lmtp}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cfg := testConfig(nil)
			cfg.Backend.TLS = tc.mode
			cfg.Backend.CAFile = ca
			cfg.Servers["inner"] = tc.addrs
			rep := NewReplica(DefaultReplicaConfig())
			rep.Reset([]fsm.Entry{
				{Name: "user.alice", Location: "inner!default", State: fsm.StateActive},
				{Name: "user.bob", Location: "inner!default", State: fsm.StateActive},
			}, 1)
			rep.SetReady(true)
			outer := startGateway(t, cfg, rep)

			c, err := imapclient.DialInsecure(outer.imap, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Login("alice", "alicepw").Wait(); err != nil {
				t.Fatalf("login through two gateways: %v", err)
			}
			appendAndFetch(t, c, fmt.Sprintf("<chain-%s-%d@gw.test>", tc.mode, time.Now().UnixNano()))
			c.Logout().Wait()
			if tc.addrs.POP3 == "" {
				return
			}
			p := dial(t, outer.pop3)
			p.expect("+OK")
			p.send("USER bob\r\nPASS bobpw\r\n")
			p.expect("+OK")
			p.expect("+OK Mailbox locked and ready")
			p.send("QUIT\r\n")
			p.expect("+OK")

			tp := lmtpClient(t, outer.lmtp)
			lmtpCmd(t, tp, 250, "LHLO mta.test")
			lmtpCmd(t, tp, 250, "MAIL FROM:<sender@example.com>")
			lmtpCmd(t, tp, 250, "RCPT TO:<bob@example.com>")
			lmtpCmd(t, tp, 354, "DATA")
			w := tp.DotWriter()
			w.Write([]byte(message("<chain-lmtp@gw.test>")))
			w.Close()
			if _, msg, err := tp.ReadResponse(250); err != nil || !strings.Contains(msg, "cyrus-be2") {
				t.Fatalf("LMTP through two gateways: %q %v", msg, err)
			}
		})
	}
	t.Run("untrusted certificate is a backend error", func(t *testing.T) {
		cfg := testConfig(nil)
		cfg.Backend.TLS = BackendTLSImplicit
		cfg.Servers["inner"] = ServerAddrs{IMAP: inner.imaps}
		rep := NewReplica(DefaultReplicaConfig())
		rep.Reset([]fsm.Entry{{Name: "user.alice", Location: "inner!default", State: fsm.StateActive}}, 1)
		rep.SetReady(true)
		outer := startGateway(t, cfg, rep)
		c := dial(t, outer.imap)
		c.expect("* OK")
		c.send("a LOGIN alice alicepw\r\n")
		c.expect("a NO [UNAVAILABLE]")
		if outer.srv.Metrics().BackendErrors != 1 {
			t.Fatalf("metrics %+v", outer.srv.Metrics())
		}
	})
}

func TestLMTPSTARTTLS(t *testing.T) {
	g := preloginGateway(t, nil)
	c := dial(t, g.lmtp)
	c.expect("220 ")
	c.send("LHLO mta.test\r\n")
	lines := c.until("250 ")
	if !strings.Contains(strings.Join(lines, "\n"), "STARTTLS") {
		t.Fatalf("LHLO does not offer STARTTLS: %v", lines)
	}
	c.send("STARTTLS\r\n")
	c.expect("220 ")
	tc := tls.Client(c.c, &tls.Config{RootCAs: g.ca, ServerName: "gw.test"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c2 := &conn{tb: t, c: tc, r: newReader(tc)}
	c2.send("LHLO mta.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<nobody@example.com>\r\n")
	c2.until("250 ")
	c2.expect("250 ")
	c2.expect("550 5.1.1")
}
