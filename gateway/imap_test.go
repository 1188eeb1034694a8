package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/rookery/rookery/fsm"
	murderpkg "github.com/rookery/rookery/internal/murder"
	"golang.org/x/crypto/bcrypt"
)

// appendAndFetch appends a message through c, finds it by Message-ID and
// fetches it back, checking the bytes survive the relay both ways.
func appendAndFetch(t *testing.T, c *imapclient.Client, msgID string) {
	t.Helper()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("SELECT: %v", err)
	}
	body := []byte(message(msgID))
	ac := c.Append("INBOX", int64(len(body)), nil)
	ac.Write(body)
	ac.Close()
	if _, err := ac.Wait(); err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	sd, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: msgID}}}, nil).Wait()
	if err != nil || len(sd.AllUIDs()) != 1 {
		t.Fatalf("UID SEARCH: %v %v", sd, err)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSetNum(sd.AllUIDs()...), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH: %v %v", msgs, err)
	}
	if got := msgs[0].FindBodySection(section); !bytes.Equal(got, body) {
		t.Fatalf("FETCH returned %q, want %q", got, body)
	}
}

func TestIMAPLoginRoutesEachUserToTheBackendHoldingTheirINBOX(t *testing.T) {
	for _, mode := range []string{IMAPModeMurder, IMAPModeRelay} {
		t.Run(mode, func(t *testing.T) { testIMAPLoginRoutes(t, mode) })
	}
}

func testIMAPLoginRoutes(t *testing.T, mode string) {
	m := murder(t)
	cfg := testConfig(m)
	cfg.IMAP.Mode = mode
	g := startGateway(t, cfg, replicaFromMaster(t, m))
	tests := []struct {
		user, pass string
		be         cyrusServer
		auth       string
	}{
		{"alice", "alicepw", m.BE1, "LOGIN"},
		{"bob", "bobpw", m.BE2, "AUTHENTICATE PLAIN"},
		{"Alice", "alicepw", m.BE1, "LOGIN"}, // username_tolower, as Cyrus
	}
	for _, tc := range tests {
		t.Run(tc.user+" "+tc.auth, func(t *testing.T) {
			c, err := imapclient.DialInsecure(g.imap, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.auth == "LOGIN" {
				err = c.Login(tc.user, tc.pass).Wait()
			} else {
				err = c.Authenticate(sasl.NewPlainClient("", tc.user, tc.pass))
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.auth, err)
			}
			caps := c.Caps()
			if mode == IMAPModeRelay && (!caps.Has(imap.CapIdle) || !caps.Has("X-REPLICATION")) {
				t.Errorf("after login the client must see the backend's capabilities, got %v", caps)
			}
			if mode == IMAPModeMurder && (!caps.Has(imap.CapIdle) || !caps.Has(imap.CapNamespace) || caps.Has("X-REPLICATION")) {
				t.Errorf("after login the client must see the murder session's capabilities, got %v", caps)
			}
			for c := range caps {
				if strings.HasPrefix(string(c), "MUPDATE=") || c == imap.CapLoginDisabled {
					t.Errorf("capability %s must be hidden", c)
				}
			}
			msgID := fmt.Sprintf("<imap-%s-%d@gw.test>", tc.user, time.Now().UnixNano())
			appendAndFetch(t, c, msgID)
			if err := c.Logout().Wait(); err != nil {
				t.Fatal(err)
			}
			if n := countMessageID(t, tc.be, strings.ToLower(tc.user), tc.pass, msgID); n != 1 {
				t.Fatalf("message appended through the gateway: %d copies on %s, want 1", n, tc.be.Name)
			}
		})
	}
	if mt := g.srv.Metrics(); mt.LoginsOK != 3 || mt.BytesClientToBackend == 0 || mt.BytesBackendToClient == 0 {
		t.Errorf("metrics: %+v", mt)
	}
}

func TestIMAPIdleThroughGatewaySeesLMTPDelivery(t *testing.T) {
	m := murder(t)
	g := startGateway(t, testConfig(m), replicaFromMaster(t, m))
	exists := make(chan uint32, 16)
	c, err := imapclient.DialInsecure(g.imap, &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					exists <- *d.NumMessages
				}
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("bob", "bobpw").Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	tp := lmtpClient(t, g.lmtp)
	lmtpCmd(t, tp, 250, "LHLO mta.test")
	lmtpCmd(t, tp, 250, "MAIL FROM:<sender@example.com>")
	lmtpCmd(t, tp, 250, "RCPT TO:<bob@example.com>")
	lmtpCmd(t, tp, 354, "DATA")
	w := tp.DotWriter()
	w.Write([]byte(message(fmt.Sprintf("<idle-%d@gw.test>", time.Now().UnixNano()))))
	w.Close()
	if _, _, err := tp.ReadResponse(250); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-exists:
		if n != sel.NumMessages+1 {
			t.Fatalf("EXISTS %d, want %d", n, sel.NumMessages+1)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no EXISTS during IDLE after delivery")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
}

func TestIMAPOverTLS(t *testing.T) {
	m := murder(t)
	g := startGateway(t, testConfig(m), replicaFromMaster(t, m))
	opts := &imapclient.Options{TLSConfig: &tls.Config{RootCAs: g.ca, ServerName: "gw.test"}}
	for _, tc := range []struct {
		name string
		dial func() (*imapclient.Client, error)
	}{
		{"STARTTLS", func() (*imapclient.Client, error) { return imapclient.DialStartTLS(g.imap, opts) }},
		{"implicit TLS", func() (*imapclient.Client, error) { return imapclient.DialTLS(g.imaps, opts) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Login("alice", "alicepw").Wait(); err != nil {
				t.Fatal(err)
			}
			appendAndFetch(t, c, fmt.Sprintf("<tls-%d@gw.test>", time.Now().UnixNano()))
			c.Logout().Wait()
		})
	}
}

// TestIMAPProxyModeLogsInAsProxyIdentity verifies the user at the gateway
// against a password the backend does not know, so the login can only
// succeed if the backend accepted "proxy" acting for the user.
func TestIMAPProxyModeLogsInAsProxyIdentity(t *testing.T) {
	m := murder(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("gateway-only-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("# test users\nalice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(m)
	cfg.Backend.Auth = AuthProxy
	cfg.Users.File = users
	g := startGateway(t, cfg, replicaFromMaster(t, m))

	c, err := imapclient.DialInsecure(g.imap, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "gateway-only-pw").Wait(); err != nil {
		t.Fatalf("proxy-mode login: %v", err)
	}
	appendAndFetch(t, c, fmt.Sprintf("<proxy-%d@gw.test>", time.Now().UnixNano()))
	c.Logout().Wait()

	raw := dial(t, g.imap)
	raw.expect("* OK")
	raw.send("a LOGIN alice alicepw\r\n") // the backend password is not the gateway's
	raw.expect("a NO [AUTHENTICATIONFAILED]")
}

func TestIMAPLoginFailures(t *testing.T) {
	m := murder(t)
	cfg := testConfig(m)
	cfg.Servers["down"] = ServerAddrs{IMAP: closedPort(t)}
	rep := replicaFromMaster(t, m)
	setEntry(rep, "user.moving", "be1!default", fsm.StateReserved)
	setEntry(rep, "user.lost", "down!default", fsm.StateActive)
	setEntry(rep, "user.nowhere", "unknownserver!default", fsm.StateActive)
	g := startGateway(t, cfg, rep)
	delay := cfg.Limits.AuthFailureDelay.Std()

	tests := []struct {
		name     string
		login    string
		want     string
		minDelay time.Duration
	}{
		{"unknown user fails like a bad password, after the delay", `LOGIN nobody secret`, "NO [AUTHENTICATIONFAILED]", delay},
		{"invalid user name is just unknown", `LOGIN "a/b" secret`, "NO [AUTHENTICATIONFAILED]", delay},
		{"wrong password refused by the backend", `LOGIN alice wrong`, "NO [AUTHENTICATIONFAILED]", delay},
		{"RESERVED INBOX is temporary", `LOGIN moving secret`, "NO [UNAVAILABLE]", 0},
		{"unreachable backend is temporary", `LOGIN lost secret`, "NO [UNAVAILABLE]", 0},
		{"server missing from the config is temporary", `LOGIN nowhere secret`, "NO [UNAVAILABLE]", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, g.imap)
			c.expect("* OK")
			start := time.Now()
			c.send("a " + tc.login + "\r\n")
			c.expect("a " + tc.want)
			if d := time.Since(start); d < tc.minDelay {
				t.Errorf("answered after %v, want at least %v", d, tc.minDelay)
			}
			// The session stays usable after a failed login.
			c.send("b NOOP\r\n")
			c.expect("b OK")
		})
	}
}

func TestIMAPUnknownUserIsTemporaryUntilReplicaIsReady(t *testing.T) {
	rep := NewReplica(DefaultReplicaConfig())
	g := startGateway(t, testConfig(nil), rep)
	c := dial(t, g.imap)
	c.expect("* OK")
	c.send("a LOGIN alice alicepw\r\n")
	c.expect("a NO [UNAVAILABLE]")
	rep.Reset(nil, 5)
	rep.SetReady(true)
	c.send("b LOGIN alice alicepw\r\n")
	c.expect("b NO [AUTHENTICATIONFAILED]")
}

// TestIMAPMovedUserFollowsTheReplica moves a user from be1 to be2 with a
// real Cyrus XFER (data and mupdate entry), reloads the replica from the
// real master, and checks the next login and the next delivery land on
// be2.
func TestIMAPMovedUserFollowsTheReplica(t *testing.T) {
	m := murder(t)
	ctx := context.Background()
	carol := fmt.Sprintf("carol%d", time.Now().UnixNano()%1_000_000) // fresh per run (-count)
	if err := m.AddUser(ctx, carol, "carolpw"); err != nil {
		t.Fatal(err)
	}
	if err := m.CreateUser(ctx, murderpkg.RoleBE1, carol); err != nil {
		t.Fatal(err)
	}
	directAppend(t, m.BE1, carol, "carolpw", "<before-move@gw.test>")
	rep := replicaFromMaster(t, m)
	g := startGateway(t, testConfig(m), rep)
	loginSees := func(msgID string) bool {
		c, err := imapclient.DialInsecure(g.imap, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(carol, "carolpw").Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		sd, err := c.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: msgID}}}, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		c.Logout().Wait()
		return len(sd.AllSeqNums()) == 1
	}
	if !loginSees("<before-move@gw.test>") {
		t.Fatal("before the move, the login does not reach be1")
	}

	if err := m.MoveUser(ctx, murderpkg.RoleBE1, murderpkg.RoleBE2, carol); err != nil {
		t.Fatal(err)
	}
	entries, err := m.Directory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep.Reset(entries, rep.Revision()+1)
	if e, ok := rep.Lookup("user." + carol); !ok || e.Server() != "be2" || e.State != fsm.StateActive {
		t.Fatalf("after XFER the master says user.%s is %+v, want ACTIVE on be2", carol, e)
	}
	directAppend(t, m.BE2, carol, "carolpw", "<after-move@gw.test>")
	if !loginSees("<before-move@gw.test>") || !loginSees("<after-move@gw.test>") {
		t.Fatal("after the move, the login does not reach be2 with the moved mailbox")
	}

	tp := lmtpClient(t, g.lmtp)
	lmtpCmd(t, tp, 250, "LHLO mta.test")
	lmtpCmd(t, tp, 250, "MAIL FROM:<sender@example.com>")
	lmtpCmd(t, tp, 250, "RCPT TO:<%s@example.com>", carol)
	lmtpCmd(t, tp, 354, "DATA")
	w := tp.DotWriter()
	w.Write([]byte(message("<moved-lmtp@gw.test>")))
	w.Close()
	if _, msg, err := tp.ReadResponse(250); err != nil || !strings.Contains(msg, "cyrus-be2") {
		t.Fatalf("delivery after move: %q %v", msg, err)
	}
}

// directAppend logs in to a backend directly (not through the gateway)
// and appends a message to the user's INBOX.
func directAppend(t *testing.T, b cyrusServer, user, pass, msgID string) {
	t.Helper()
	c := loginDirect(t, b, user, pass)
	defer c.Close()
	body := []byte(message(msgID))
	ac := c.Append("INBOX", int64(len(body)), nil)
	ac.Write(body)
	ac.Close()
	if _, err := ac.Wait(); err != nil {
		t.Fatalf("APPEND as %s on %s: %v", user, b.Name, err)
	}
	c.Logout().Wait()
}

func TestShutdownClosesPreLoginConnectionsAndDrainsRelayedSessions(t *testing.T) {
	m := murder(t)
	g := startGateway(t, testConfig(m), replicaFromMaster(t, m))
	relayed := dial(t, g.imap)
	relayed.expect("* OK")
	relayed.send("a LOGIN alice alicepw\r\n")
	relayed.expect("a OK [CAPABILITY")
	idle := dial(t, g.imap)
	idle.expect("* OK")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { g.srv.Shutdown(ctx); close(done) }()
	if !idle.closed() {
		t.Fatal("pre-login connection not closed by Shutdown")
	}
	relayed.send("b NOOP\r\n")
	relayed.expect("b OK") // still served while draining
	<-done
	if !relayed.closed() {
		t.Fatal("relayed session not closed when the drain deadline passed")
	}
}
