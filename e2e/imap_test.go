package e2e

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// imapSession is a minimal line-oriented IMAP client used to drive Cyrus
// (admin commands such as XFER-by-RENAME that typed clients do not offer).
type imapSession struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	n    int
}

func dialIMAP(t testing.TB, addr, user, pass string) *imapSession {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("imap dial %s: %v", addr, err)
	}
	s := &imapSession{t: t, conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() { conn.Close() })
	if _, err := s.line(); err != nil {
		t.Fatalf("imap greeting from %s: %v", addr, err)
	}
	if status, _ := s.do(fmt.Sprintf("LOGIN %s %s", user, pass)); !strings.HasPrefix(status, "OK") {
		t.Fatalf("imap LOGIN %s at %s: %s", user, addr, status)
	}
	return s
}

func (s *imapSession) line() (string, error) {
	_ = s.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	l, err := s.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// do sends one command and returns the tagged status ("OK ...", "NO ...")
// and the untagged lines before it.
func (s *imapSession) do(cmd string) (string, []string) {
	s.t.Helper()
	s.n++
	tag := fmt.Sprintf("t%d", s.n)
	if _, err := fmt.Fprintf(s.conn, "%s %s\r\n", tag, cmd); err != nil {
		s.t.Fatalf("imap %s: %v", cmd, err)
	}
	var untagged []string
	for {
		l, err := s.line()
		if err != nil {
			s.t.Fatalf("imap %s: %v", cmd, err)
		}
		if strings.HasPrefix(l, tag+" ") {
			return strings.TrimPrefix(l, tag+" "), untagged
		}
		untagged = append(untagged, l)
	}
}

// mustOK runs cmd and fails the test unless it answers OK.
func (s *imapSession) mustOK(cmd string) []string {
	s.t.Helper()
	status, untagged := s.do(cmd)
	if !strings.HasPrefix(status, "OK") {
		s.t.Fatalf("imap %q: %s (untagged %q)", cmd, status, untagged)
	}
	return untagged
}
