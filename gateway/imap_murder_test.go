package gateway

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/rookery/rookery/fsm"
	murderpkg "github.com/rookery/rookery/internal/murder"
)

// murderFolders creates, once per murder, bob's folder shared with alice
// on be2 and a shared.* folder on be2, each holding one message.
func murderFolders(t *testing.T, m *testMurder) {
	t.Helper()
	c, err := imapclient.DialInsecure(m.BE2.IMAP, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(murderpkg.AdminUser, murderpkg.AdminPass).Wait(); err != nil {
		t.Fatal(err)
	}
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

// TestIMAPMurderShowsSpecialUseFromTheINBOXBackend creates a folder with a
// special use through the gateway; LIST, answered from the replica, must
// show the attribute the INBOX backend keeps.
func TestIMAPMurderShowsSpecialUseFromTheINBOXBackend(t *testing.T) {
	m := murder(t)
	rep := replicaFromMaster(t, m)
	g := startGateway(t, testConfig(m), rep)
	c := murderLogin(t, g.imap)
	name := fmt.Sprintf("Drafts-%d", time.Now().UnixNano())
	if err := c.Create(name, &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrDrafts}}).Wait(); err != nil {
		t.Fatalf("CREATE %s (USE (\\Drafts)): %v", name, err)
	}
	entries, err := m.Directory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rep.Reset(entries, rep.Revision()+1) // as the Watch stream would deliver the new name
	c2 := murderLogin(t, g.imap)
	list, err := c2.List("", name, nil).Collect()
	if err != nil || len(list) != 1 {
		t.Fatalf("LIST %s: %v %v", name, list, err)
	}
	if !slices.Contains(list[0].Attrs, imap.MailboxAttrDrafts) {
		t.Errorf("LIST %s attributes %v, want \\Drafts from the backend", name, list[0].Attrs)
	}
}

// TestIMAPMurderMovesAcrossBackendsKeepingFlagsAndDate moves a message
// from alice's INBOX (be1) to shared.proj (be2): it must arrive with its
// flags and internal date, and leave the source.
func TestIMAPMurderMovesAcrossBackendsKeepingFlagsAndDate(t *testing.T) {
	m := murder(t)
	murderFolders(t, m)
	g := startGateway(t, testConfig(m), replicaFromMaster(t, m))
	c := murderLogin(t, g.imap)
	subject := fmt.Sprintf("move-%d", time.Now().UnixNano())
	msg := "Subject: " + subject + "\r\n\r\nmoved\r\n"
	date := time.Date(2020, 5, 17, 10, 11, 12, 0, time.UTC)
	ac := c.Append("INBOX", int64(len(msg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagFlagged}, Time: date})
	ac.Write([]byte(msg))
	ac.Close()
	if _, err := ac.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	find := func(mailbox string) []imap.UID {
		t.Helper()
		if _, err := c.Select(mailbox, nil).Wait(); err != nil {
			t.Fatalf("SELECT %s: %v", mailbox, err)
		}
		data, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: subject}}}, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		return data.AllUIDs()
	}
	uids := find("INBOX")
	if len(uids) != 1 {
		t.Fatalf("appended message: UIDs %v", uids)
	}
	md, err := c.Move(imap.UIDSetNum(uids...), "Shared Folders/shared/proj").Wait()
	if err != nil {
		t.Fatalf("MOVE to a mailbox on be2: %v", err)
	}
	if md.UIDValidity == 0 {
		t.Errorf("MOVE across backends reported no COPYUID: %+v", md)
	}
	if left := find("INBOX"); len(left) != 0 {
		t.Errorf("source still holds the message: %v", left)
	}
	moved := find("Shared Folders/shared/proj")
	if len(moved) != 1 {
		t.Fatalf("destination holds %v", moved)
	}
	msgs, err := c.Fetch(imap.UIDSetNum(moved...), &imap.FetchOptions{Flags: true, InternalDate: true}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH: %v %v", msgs, err)
	}
	if !slices.Contains(msgs[0].Flags, imap.FlagFlagged) || !msgs[0].InternalDate.Equal(date) {
		t.Errorf("moved message has flags %v date %v, want \\Flagged and %v", msgs[0].Flags, msgs[0].InternalDate, date)
	}
}
