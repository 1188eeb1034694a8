package gateway

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/config"
)

// These tests need no Cyrus: they exercise the gateway's own pre-login
// state machines over real TCP.

func preloginGateway(t *testing.T, mutate func(*Config)) *gw {
	t.Helper()
	cfg := testConfig(nil)
	cfg.Limits.MaxBadCommands = 5
	if mutate != nil {
		mutate(&cfg)
	}
	rep := NewReplica(DefaultReplicaConfig())
	rep.SetReady(true)
	return startGateway(t, cfg, rep)
}

func TestIMAPGreetingAndPreLoginCommands(t *testing.T) {
	g := preloginGateway(t, nil)
	c := dial(t, g.imap)
	c.expect("* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN SASL-IR ID] gw.test")
	steps := []struct{ send, want string }{
		{"a CAPABILITY\r\n", "* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN SASL-IR ID"},
		{"", "a OK"},
		{"b NOOP\r\n", "b OK"},
		{"c ID (\"name\" \"test\" \"version\" NIL)\r\n", `* ID ("name" "Rookery gateway")`},
		{"", "c OK"},
		{"d ID NIL\r\n", "* ID"},
		{"", "d OK"},
		{"e SELECT INBOX\r\n", "e BAD Please login first"},
		{"f AUTHENTICATE CRAM-MD5\r\n", "f NO Unsupported"},
		{"g LOGOUT\r\n", "* BYE"},
		{"", "g OK"},
	}
	for _, s := range steps {
		if s.send != "" {
			c.send(s.send)
		}
		c.expect(s.want)
	}
	if !c.closed() {
		t.Fatal("connection not closed after LOGOUT")
	}
}

func TestIMAPImplicitTLSGreetingHasNoSTARTTLS(t *testing.T) {
	g := preloginGateway(t, nil)
	tc, err := tls.Dial("tcp", g.imaps, &tls.Config{RootCAs: g.ca, ServerName: "gw.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c := &conn{tb: t, c: tc, r: newReader(tc)}
	c.expect("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR ID]")
}

func TestIMAPProtocolErrorsGetBADAndBoundedMemory(t *testing.T) {
	g := preloginGateway(t, nil)
	tests := []struct {
		name  string
		send  string
		want  []string
		close bool
	}{
		{"garbage without tag", "\x00\xff\xfe garbage\r\n", []string{"* BAD"}, false},
		{"tag only", "abc\r\n", []string{"* BAD"}, false},
		{"unknown command", "a FROBNICATE\r\n", []string{"a BAD Unrecognized command"}, false},
		{"unterminated quoted", "a LOGIN \"alice\r\n", []string{"a BAD"}, false},
		{"bad escape", "a LOGIN \"a\\lice\" x\r\n", []string{"a BAD"}, false},
		{"LOGIN with one argument", "a LOGIN alice\r\n", []string{"a BAD"}, false},
		{"LOGIN with a list", "a LOGIN (alice) x\r\n", []string{"a BAD"}, false},
		{"unbalanced parentheses", "a ID (\"a\" \"b\"\r\n", []string{"a BAD"}, false},
		{"stray close paren", "a ID )\r\n", []string{"a BAD"}, false},
		{"deep nesting", "a ID (((((((x)))))))\r\n", []string{"a BAD"}, false},
		{"overlong line keeps its tag", "tag1 LOGIN " + strings.Repeat("x", 20000) + "\r\n", []string{"tag1 BAD [TOOBIG]"}, false},
		{"synchronising literal bomb is refused", "a LOGIN {4294967295}\r\n", []string{"a BAD [TOOBIG]"}, false},
		{"non-synchronising literal bomb closes", "a LOGIN {99999999+}\r\n", []string{"a BAD [TOOBIG]", "* BYE"}, true},
		{"invalid literal header", "a LOGIN {12x}\r\n", []string{"a BAD"}, false},
		{"literal not at end of line", "a LOGIN {5} x\r\n", []string{"a BAD"}, false},
		{"line beyond the discard budget closes", "a " + strings.Repeat("y", 200000) + "\r\n", []string{"* BAD [TOOBIG]", "* BYE"}, true},
		{"bad SASL response", "a AUTHENTICATE PLAIN !!!notbase64\r\n", []string{"a BAD"}, false},
		{"PLAIN without password field", "a AUTHENTICATE PLAIN YWxpY2U=\r\n", []string{"a BAD"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, g.imap)
			c.expect("* OK")
			c.send(tc.send)
			for _, w := range tc.want {
				c.expect(w)
			}
			if tc.close {
				if !c.closed() {
					t.Fatal("connection should be closed")
				}
				return
			}
			c.send("z NOOP\r\n")
			c.expect("z OK")
		})
	}
}

func TestIMAPTooManyProtocolErrorsClose(t *testing.T) {
	g := preloginGateway(t, nil)
	c := dial(t, g.imap)
	c.expect("* OK")
	for i := 0; i < 5; i++ {
		c.send("x BOGUS\r\n")
		c.expect("x BAD")
	}
	c.expect("* BYE Too many protocol errors")
	if !c.closed() {
		t.Fatal("connection should be closed")
	}
}

func TestIMAPLiteralsAreAcceptedWithinLimits(t *testing.T) {
	g := preloginGateway(t, nil)
	c := dial(t, g.imap)
	c.expect("* OK")
	c.send("a LOGIN {5}\r\n")
	c.expect("+ ")
	c.send("alice {6}\r\n")
	c.expect("+ ")
	c.send("secret\r\n")
	// The login itself fails (no such user), after the failure delay.
	c.expect("a NO [AUTHENTICATIONFAILED]")
}

func TestIMAPAuthenticateContinuationAndCancel(t *testing.T) {
	g := preloginGateway(t, nil)
	c := dial(t, g.imap)
	c.expect("* OK")
	c.send("a AUTHENTICATE PLAIN\r\n")
	c.expect("+ ")
	c.send("*\r\n")
	c.expect("a BAD Authentication cancelled")
	c.send("b AUTHENTICATE PLAIN\r\n")
	c.expect("+ ")
	c.send("AGJvZ3VzAHB3\r\n") // \0bogus\0pw
	c.expect("b NO [AUTHENTICATIONFAILED]")
}

func TestIMAPSTARTTLS(t *testing.T) {
	t.Run("pipelined commands after STARTTLS are refused, not run under TLS", func(t *testing.T) {
		g := preloginGateway(t, nil)
		c := dial(t, g.imap)
		c.expect("* OK")
		c.send("a STARTTLS\r\nb LOGIN alice alicepw\r\n")
		c.expect("a BAD STARTTLS must be the last command")
		c.send("c NOOP\r\n")
		c.expect("c OK")
	})
	t.Run("garbage instead of a handshake closes the connection", func(t *testing.T) {
		g := preloginGateway(t, nil)
		c := dial(t, g.imap)
		c.expect("* OK")
		c.send("a STARTTLS\r\n")
		c.expect("a OK")
		c.send("b LOGIN alice alicepw\r\n")
		if !c.closed() {
			t.Fatal("connection should be closed after a failed handshake")
		}
		waitFor(t, func() bool { return g.srv.Metrics().TLSFailures == 1 })
	})
	t.Run("STARTTLS without a certificate is BAD", func(t *testing.T) {
		cfg := testConfig(nil)
		srv, err := New(cfg, NewReplica(DefaultReplicaConfig()))
		if err != nil {
			t.Fatal(err)
		}
		ln := listen(t)
		go srv.Serve(t.Context(), ProtoIMAP, ln)
		t.Cleanup(func() { srv.Close() })
		c := dial(t, ln.Addr().String())
		c.expect("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR ID]")
		c.send("a STARTTLS\r\n")
		c.expect("a BAD STARTTLS not available")
		c.send("b NOOP\r\n")
		c.expect("b OK")
	})
	t.Run("after TLS, STARTTLS again is BAD and login works normally", func(t *testing.T) {
		g := preloginGateway(t, func(c *Config) { c.TLS.Required = true })
		c := dial(t, g.imap)
		c.expect("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED ID]")
		c.send("a LOGIN alice alicepw\r\n")
		c.expect("a NO [PRIVACYREQUIRED]")
		c.send("b AUTHENTICATE PLAIN AGFsaWNlAHB3\r\n")
		c.expect("b NO [PRIVACYREQUIRED]")
		c.send("c STARTTLS\r\n")
		c.expect("c OK")
		tc := tls.Client(c.c, &tls.Config{RootCAs: g.ca, ServerName: "gw.test"})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c2 := &conn{tb: t, c: tc, r: newReader(tc)}
		c2.send("d CAPABILITY\r\n")
		c2.expect("* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR ID")
		c2.expect("d OK")
		c2.send("e STARTTLS\r\n")
		c2.expect("e BAD")
		c2.send("f LOGIN nobody pw\r\n")
		c2.expect("f NO [AUTHENTICATIONFAILED]")
	})
}

func TestLoginFailuresAreRateLimitedPerIP(t *testing.T) {
	g := preloginGateway(t, func(c *Config) {
		c.Limits.LoginFailures = 2
		c.Limits.AuthFailureDelay = config.Duration(0)
	})
	c := dial(t, g.imap)
	c.expect("* OK")
	for i := 0; i < 2; i++ {
		c.send("a LOGIN nobody pw\r\n")
		c.expect("a NO [AUTHENTICATIONFAILED]")
	}
	c.send("b LOGIN nobody pw\r\n")
	c.expect("b NO [UNAVAILABLE] Too many failed logins")
	// The limit is per IP, not per connection, and covers POP3 too.
	p := dial(t, g.pop3)
	p.expect("+OK")
	p.send("USER alice\r\nPASS pw\r\n")
	p.expect("+OK")
	p.expect("-ERR [SYS/TEMP] Too many failed logins")
	if got := g.srv.Metrics().LoginsRateLimited; got != 2 {
		t.Fatalf("LoginsRateLimited = %d, want 2", got)
	}
}

func TestConnectionLimitPerIP(t *testing.T) {
	g := preloginGateway(t, func(c *Config) { c.Limits.MaxConnectionsPerIP = 2 })
	a := dial(t, g.imap)
	a.expect("* OK")
	b := dial(t, g.pop3)
	b.expect("+OK")
	c := dial(t, g.imap)
	c.expect("* BYE Too many connections")
	l := dial(t, g.lmtp)
	l.expect("421 4.3.2")
	a.send("a LOGOUT\r\n")
	a.expect("* BYE")
	waitFor(t, func() bool { return g.srv.Metrics().ActiveConnections == 1 })
	d := dial(t, g.imap)
	d.expect("* OK")
}

func TestPOP3PreLogin(t *testing.T) {
	g := preloginGateway(t, func(c *Config) { c.Limits.MaxBadCommands = 20 })
	c := dial(t, g.pop3)
	c.expect("+OK gw.test")
	steps := []struct{ send, want string }{
		{"CAPA\r\n", "+OK"},
		{"", "USER"},
		{"", "SASL PLAIN"},
		{"", "STLS"},
		{"", "RESP-CODES"},
		{"", "AUTH-RESP-CODE"},
		{"", "PIPELINING"},
		{"", "IMPLEMENTATION Rookery"},
		{"", "."},
		{"NOOP\r\n", "+OK"},
		{"PASS secret\r\n", "-ERR USER first"},
		{"STAT\r\n", "-ERR"},
		{"AUTH\r\n", "+OK"},
		{"", "PLAIN"},
		{"", "."},
		{"AUTH CRAM-MD5\r\n", "-ERR Unsupported"},
		{"AUTH PLAIN\r\n", "+ "},
		{"*\r\n", "-ERR Authentication cancelled"},
		{"AUTH PLAIN !!!\r\n", "-ERR Invalid SASL"},
		{"USER alice\r\n", "+OK"},
		{"NOOP\r\n", "+OK"},
		{"PASS secret\r\n", "-ERR USER first"}, // NOOP cancelled the USER
		{strings.Repeat("x", 20000) + "\r\n", "-ERR Line too long"},
		{"STLS\r\nNOOP\r\n", "-ERR STLS must be the last command"},
		{"QUIT\r\n", "+OK"},
	}
	for _, s := range steps {
		if s.send != "" {
			c.send(s.send)
		}
		c.expect(s.want)
	}
	if !c.closed() {
		t.Fatal("connection not closed after QUIT")
	}
}

func TestPOP3STLSAndRequiredTLS(t *testing.T) {
	g := preloginGateway(t, func(c *Config) { c.TLS.Required = true })
	c := dial(t, g.pop3)
	c.expect("+OK")
	c.send("USER alice\r\n")
	c.expect("-ERR [AUTH] Plaintext authentication is disabled")
	c.send("CAPA\r\n")
	lines := c.until(".")
	if strings.Contains(strings.Join(lines, "\n"), "USER") {
		t.Fatalf("CAPA before TLS advertises USER: %v", lines)
	}
	c.send("STLS\r\n")
	c.expect("+OK")
	tc := tls.Client(c.c, &tls.Config{RootCAs: g.ca, ServerName: "gw.test"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c2 := &conn{tb: t, c: tc, r: newReader(tc)}
	c2.send("USER nobody\r\n")
	c2.expect("+OK")
	c2.send("PASS x\r\n")
	c2.expect("-ERR [AUTH]")
}

func TestPreLoginIdleTimeout(t *testing.T) {
	g := preloginGateway(t, func(c *Config) { c.Limits.PreLoginTimeout = config.Duration(300 * time.Millisecond) })
	c := dial(t, g.imap)
	c.expect("* OK")
	c.expect("* BYE Autologout")
	if !c.closed() {
		t.Fatal("idle connection not closed")
	}
}
