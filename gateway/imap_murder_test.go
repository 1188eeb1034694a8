package gateway

import (
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/gateway/internal/cyrustest"
)

// murderFolders creates, once per murder, bob's folder shared with alice
// on be2 and a shared.* folder on be2, each holding one message.
func murderFolders(t *testing.T, m *cyrustest.Murder) {
	t.Helper()
	c, err := cyrustest.Admin(m.BE2)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Logout()
	if st, err := c.Status("shared/proj", &imap.StatusOptions{NumMessages: true}).Wait(); err == nil && *st.NumMessages > 0 {
		return
	}
	for _, mb := range []string{"user/bob/Shared", "user/bob/Secret", "shared", "shared/proj"} {
		if err := c.Create(mb, nil).Wait(); err != nil && !strings.Contains(err.Error(), "exists") {
			t.Fatalf("CREATE %s: %v", mb, err)
		}
	}
	for _, acl := range []struct {
		mb, id, rights string
	}{
		{"user/bob/Shared", "admin", "lrswi"}, {"shared/proj", "admin", "lrswi"},
		{"user/bob/Shared", "alice", "lrswi"}, {"user/bob/Secret", "anyone", "lr"}, {"user/bob/Secret", "-alice", "lr"},
		{"shared", "anyone", "lr"}, {"shared/proj", "alice", "lrswipkxtecda"},
	} {
		if err := c.SetACL(acl.mb, imap.RightsIdentifier(acl.id), imap.RightModificationReplace, imap.RightSet(acl.rights)).Wait(); err != nil {
			t.Fatalf("SETACL %s %s: %v", acl.mb, acl.id, err)
		}
	}
	for _, mb := range []string{"user/bob/Shared", "shared/proj"} {
		msg := "Subject: in " + mb + "\r\n\r\nhello\r\n"
		ac := c.Append(mb, int64(len(msg)), nil)
		ac.Write([]byte(msg))
		ac.Close()
		if _, err := ac.Wait(); err != nil {
			t.Fatalf("APPEND %s: %v", mb, err)
		}
	}
}

func murderLogin(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("alice", "alicepw").Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func listNames(t *testing.T, c *imapclient.Client, pattern string) []string {
	t.Helper()
	list, err := c.List("", pattern, nil).Collect()
	if err != nil {
		t.Fatalf("LIST %q: %v", pattern, err)
	}
	var names []string
	for _, d := range list {
		names = append(names, d.Mailbox)
	}
	return names
}

func TestIMAPMurderListsMailboxesOfEveryBackendByACL(t *testing.T) {
	m := murder(t)
	murderFolders(t, m)
	g := startGateway(t, testConfig(m), replicaFromMaster(t, m))
	c := murderLogin(t, g.imap)
	got := strings.Join(listNames(t, c, "*"), " ")
	for _, want := range []string{"INBOX", "Other Users/bob/Shared", "Shared Folders/shared", "Shared Folders/shared/proj"} {
		if !strings.Contains(" "+got+" ", " "+want+" ") {
			t.Errorf("LIST * = %q, want %q in it", got, want)
		}
	}
	for _, hidden := range []string{"Other Users/bob/Secret", "Other Users/bob "} {
		if strings.Contains(got+" ", hidden) {
			t.Errorf("LIST * = %q shows %q, which alice may not look up", got, hidden)
		}
	}
}

func TestIMAPMurderSwitchesBackendsWithinOneSession(t *testing.T) {
	m := murder(t)
	murderFolders(t, m)
	g := startGateway(t, testConfig(m), replicaFromMaster(t, m))
	c := murderLogin(t, g.imap)
	for _, mb := range []string{"Other Users/bob/Shared", "INBOX", "Shared Folders/shared/proj"} {
		if _, err := c.Select(mb, nil).Wait(); err != nil {
			t.Fatalf("SELECT %s: %v", mb, err)
		}
		if _, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "in"}}}, nil).Wait(); err != nil {
			t.Fatalf("UID SEARCH in %s: %v", mb, err)
		}
	}
}

// TestIMAPMurderAnswersCommandsImapserverLacks sends ACL and QUOTA
// commands, which go-imap's imapserver does not know, pipelined with
// commands it does know (one with a synchronizing literal) in one write:
// each must be answered by the right party, in order.
func TestIMAPMurderAnswersCommandsImapserverLacks(t *testing.T) {
	m := murder(t)
	murderFolders(t, m)
	g := startGateway(t, testConfig(m), replicaFromMaster(t, m))
	c := dial(t, g.imap)
	c.expect("* OK")
	c.send("a LOGIN alice alicepw\r\n")
	loginCaps := c.expect("a OK [CAPABILITY ")
	c.send("b MYRIGHTS \"Other Users/bob/Shared\"\r\nc NOOP\r\nd GETACL \"Shared Folders/shared/proj\"\r\ne STATUS {21}\r\n")
	c.expect(`* MYRIGHTS "Other Users/bob/Shared" "lrswi"`)
	c.expect("b OK")
	c.expect("c OK")
	if l := c.until("d "); !strings.Contains(strings.Join(l, "\n"), `"alice" "lrswipkxtecda"`) || !strings.HasPrefix(l[len(l)-1], "d OK") {
		t.Errorf("GETACL through the gateway: %q", l)
	}
	c.expect("+ ")
	c.send("Shared Folders/shared (MESSAGES)\r\nf CAPABILITY\r\n")
	c.expect(`* STATUS "Shared Folders/shared" (MESSAGES 0)`)
	c.expect("e OK")
	l := c.expect("* CAPABILITY ")
	if !strings.Contains(l, " ACL ") || !strings.Contains(l, " QUOTA") || !strings.Contains(l, " NAMESPACE ") {
		t.Errorf("CAPABILITY after login = %q, want ACL, QUOTA and NAMESPACE", l)
	}
	if !strings.HasPrefix(loginCaps, "a OK [CAPABILITY "+strings.TrimPrefix(l, "* CAPABILITY ")+"]") {
		t.Errorf("the login advertised %q, CAPABILITY answers %q", loginCaps, l)
	}
	c.expect("f OK")
	c.send("g GETQUOTAROOT INBOX\r\nh MYRIGHTS \"Other Users/bob/Secret\"\r\ni SETACL \"Other Users/bob/Shared\" carol lr\r\n")
	c.until("g ")
	c.expect("h NO")
	c.expect("i NO") // alice lacks the 'a' right there: the backend refuses
}

// TestIMAPMurderUnavailableMailboxesAreTemporaryFailures: a mailbox the
// directory says is RESERVED (being created or moved) and one on a
// backend that does not answer both get NO [UNAVAILABLE], while the rest
// of the session goes on.
func TestIMAPMurderUnavailableMailboxesAreTemporaryFailures(t *testing.T) {
	m := murder(t)
	murderFolders(t, m)
	cfg := testConfig(m)
	cfg.Servers["be3"] = ServerAddrs{IMAP: closedPort(t)}
	rep := replicaFromMaster(t, m)
	g := startGateway(t, cfg, rep)
	setEntry(rep, "user.bob.Shared", "be2!default", fsm.StateReserved)
	setEntry(rep, "shared.gone", "be3!default", fsm.StateActive)
	c := dial(t, g.imap)
	c.expect("* OK")
	c.send("a LOGIN alice alicepw\r\n")
	c.expect("a OK")
	c.send("b SELECT \"Other Users/bob/Shared\"\r\n")
	c.expect("b NO [UNAVAILABLE]")
	c.send("c STATUS \"Shared Folders/shared/gone\" (MESSAGES)\r\n")
	c.expect("c NO [UNAVAILABLE]")
	c.send("d SELECT INBOX\r\n")
	c.until("d OK")
}
