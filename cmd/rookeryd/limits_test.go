package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/auth"
	"github.com/rookery/rookery/internal/freeport"
)

// TestMupdateRequireTLS: with mupdate.require_tls no password crosses the
// network in the clear: the banner offers no mechanism before STARTTLS,
// AUTHENTICATE is refused with Cyrus SASL's text, and after STARTTLS the
// same login succeeds.
func TestMupdateRequireTLS(t *testing.T) {
	dir := t.TempDir()
	c := testConfig(t, filepath.Join(dir, "data"))
	p := apitest.NewPKI(t, "mupdate-test")
	c.Mupdate.TLSCert, c.Mupdate.TLSKey = p.Issue(t, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	c.Mupdate.RequireTLS = true
	c.Mupdate.Listen = "127.0.0.1:" + strconv.Itoa(freeport.T(t, 1)[0])
	h, err := auth.HashPasswordCost("mupdatepw", 4)
	if err != nil {
		t.Fatal(err)
	}
	c.Auth.UsersFile = filepath.Join(dir, "users")
	os.WriteFile(c.Auth.UsersFile, []byte("mupdate:"+h+"\n"), 0o600)
	c.Auth.Admins = []string{"mupdate"}
	c.Raft.PeerSecretFile = filepath.Join(dir, "secret")
	os.WriteFile(c.Raft.PeerSecretFile, []byte("a-cluster-secret-for-tests\n"), 0o600)
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	defer serveInBackground(t, c)()

	var nc net.Conn
	for deadline := time.Now().Add(20 * time.Second); ; {
		if nc, err = net.Dial("tcp", c.Mupdate.Listen); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(nc)
	banner := func() string {
		var lines []string
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("banner: %v (%q)", err, lines)
			}
			lines = append(lines, strings.TrimSpace(l))
			if strings.HasPrefix(l, "* OK") {
				return strings.Join(lines, "\n")
			}
		}
	}
	line := func() string {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return strings.TrimSpace(l)
	}
	login := `A01 AUTHENTICATE "PLAIN" "` + base64.StdEncoding.EncodeToString([]byte("\x00mupdate\x00mupdatepw")) + "\"\r\n"

	if b := banner(); !strings.Contains(b, "* AUTH\n") || strings.Contains(b, "PLAIN") || !strings.Contains(b, "* STARTTLS") {
		t.Fatalf("plaintext banner offers a mechanism or no STARTTLS:\n%s", b)
	}
	nc.Write([]byte(login))
	if got := line(); got != `A01 NO "encryption needed to use mechanism"` {
		t.Fatalf("AUTHENTICATE in the clear: %q", got)
	}
	nc.Write([]byte("S01 STARTTLS\r\n"))
	if got := line(); got != `S01 OK "Begin TLS negotiation now"` {
		t.Fatalf("STARTTLS: %q", got)
	}
	tc := tls.Client(nc, &tls.Config{RootCAs: p.Pool, ServerName: "127.0.0.1"})
	r = bufio.NewReader(tc)
	nc = tc
	if b := banner(); !strings.Contains(b, `"PLAIN"`) {
		t.Fatalf("banner after STARTTLS offers no PLAIN:\n%s", b)
	}
	tc.Write([]byte(login))
	if got := line(); got != `A01 OK "Authenticated"` {
		t.Fatalf("AUTHENTICATE after STARTTLS: %q", got)
	}
}
