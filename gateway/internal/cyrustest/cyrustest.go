// Package cyrustest runs a real Cyrus murder (mupdate master plus two
// backends with IMAP, POP3 and LMTP, and on demand a real frontend) for
// the gateway's tests, with internal/murder's murder-up.sh fixture on
// free ports.
//
// internal/murder.Start ties a murder to one test (t.Cleanup); the
// gateway's tests and benchmarks share one murder per package run
// instead (started on first use, stopped by TestMain), because starting
// and stopping Cyrus costs seconds per test.
package cyrustest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/freeport"
	"github.com/rookery/rookery/internal/mupdateclient"
)

// Backend is one Cyrus backend's service addresses.
type Backend struct {
	Name string // Cyrus servername: the location's server part
	IMAP string
	POP3 string
	LMTP string
}

// Murder is a running Cyrus murder.
type Murder struct {
	Dir    string
	Master string // mupdate master host:port
	BE1    Backend
	BE2    Backend
	// FE is the Cyrus frontend (proxying imapd/pop3d/lmtpd), running only
	// after StartFrontend.
	FE     Backend
	script string
	env    []string
	ports  *freeport.Ports
}

// Available reports why a murder cannot run here ("" if it can).
func Available() string {
	if os.Geteuid() != 0 {
		return "needs root (murder-up.sh starts Cyrus as root, Cyrus drops to the cyrus user)"
	}
	for _, bin := range []string{"/usr/lib/cyrus/bin/master", "/usr/lib/cyrus/bin/pop3d", "/usr/sbin/saslpasswd2"} {
		if _, err := os.Stat(bin); err != nil {
			return bin + " missing (make deps)"
		}
	}
	if script() == "" {
		return "murder-up.sh not found"
	}
	return ""
}

// script is the murder-up.sh fixture that internal/murder keeps.
func script() string {
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "..", "internal", "murder", "testdata", "murder-up.sh")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// Start runs master, be1 and be2 (with POP3) on free 127.0.0.1 ports.
func Start(ctx context.Context) (*Murder, error) {
	if why := Available(); why != "" {
		return nil, errors.New("cyrustest: " + why)
	}
	var lastErr error
	for try := 0; try < 3; try++ { // free ports may be taken between pick and bind
		m, err := start(ctx)
		if err == nil {
			return m, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func start(ctx context.Context) (*Murder, error) {
	dir, err := os.MkdirTemp("", "gwmurder")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	reserved, err := freeport.Take(11)
	if err != nil {
		return nil, err
	}
	ports := reserved.List
	p := func(i int) string { return strconv.Itoa(ports[i]) }
	addr := func(i int) string { return "127.0.0.1:" + p(i) }
	m := &Murder{
		Dir:    dir,
		Master: addr(0),
		BE1:    Backend{Name: "be1", IMAP: addr(1), LMTP: addr(2), POP3: addr(3)},
		BE2:    Backend{Name: "be2", IMAP: addr(4), LMTP: addr(5), POP3: addr(6)},
		FE:     Backend{Name: "fe", IMAP: addr(7), LMTP: addr(8), POP3: addr(9)},
		script: script(),
		ports:  reserved,
	}
	m.env = []string{
		"WITH_POP3=1",
		"MASTER_PORT=" + p(0),
		"BE1_IMAP_PORT=" + p(1), "BE1_LMTP_PORT=" + p(2), "BE1_POP3_PORT=" + p(3),
		"BE2_IMAP_PORT=" + p(4), "BE2_LMTP_PORT=" + p(5), "BE2_POP3_PORT=" + p(6),
		"FE_IMAP_PORT=" + p(7), "FE_LMTP_PORT=" + p(8), "FE_POP3_PORT=" + p(9), "FE_MUPDATE_PORT=" + p(10),
	}
	env := append([]string{"MURDER_ROLES=master be1 be2"}, m.env...)
	if out, err := m.run(ctx, env, "start"); err != nil {
		m.run(context.Background(), env, "stop")
		os.RemoveAll(dir)
		reserved.Release()
		return nil, fmt.Errorf("cyrustest: murder-up.sh start: %w\n%s", err, out)
	}
	return m, nil
}

func (m *Murder) run(ctx context.Context, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{m.script, m.Dir}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Stop stops every role this murder started and removes its directory.
// The roles are stopped concurrently: each Cyrus master takes a couple of
// seconds to exit.
func (m *Murder) Stop() error {
	roles := []string{"master", "be1", "be2", "fe"}
	errs := make([]error, len(roles))
	var wg sync.WaitGroup
	for i, role := range roles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := m.run(context.Background(), append([]string{"MURDER_ROLES=" + role}, m.env...), "stop"); err != nil {
				errs[i] = fmt.Errorf("cyrustest: stop %s: %w\n%s", role, err, out)
			}
		}()
	}
	wg.Wait()
	m.ports.Release()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Cyrus children may still be writing logs for a moment after their
	// master exits.
	var err error
	for try := 0; try < 20; try++ {
		if err = os.RemoveAll(m.Dir); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("cyrustest: removing %s: %w", m.Dir, err)
}

// StartFrontend starts the real Cyrus frontend (imapd/pop3d/lmtpd in
// proxy mode plus a mupdate slave of the master), for comparisons.
func (m *Murder) StartFrontend(ctx context.Context) error {
	if out, err := m.run(ctx, append([]string{"MURDER_ROLES=fe"}, m.env...), "start"); err != nil {
		return fmt.Errorf("cyrustest: starting the frontend: %w\n%s", err, out)
	}
	return nil
}

// Backends returns both backends.
func (m *Murder) Backends() []Backend { return []Backend{m.BE1, m.BE2} }

// AddUser adds a SASL user (in every backend realm) to the murder's sasldb.
func (m *Murder) AddUser(ctx context.Context, user, password string) error {
	db := filepath.Join(m.Dir, "sasldb2")
	for _, realm := range []string{"be1", "be2", "fe", "mupdate-master"} {
		cmd := exec.CommandContext(ctx, "saslpasswd2", "-f", db, "-u", realm, "-p", "-c", user)
		cmd.Stdin = strings.NewReader(password)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("cyrustest: saslpasswd2 %s@%s: %w: %s", user, realm, err, out)
		}
	}
	if out, err := exec.CommandContext(ctx, "chown", "cyrus:mail", db).CombinedOutput(); err != nil {
		return fmt.Errorf("cyrustest: chown sasldb: %w: %s", err, out)
	}
	return nil
}

// Admin logs in to a backend's IMAP service as the Cyrus admin.
func Admin(b Backend) (*imapclient.Client, error) {
	c, err := imapclient.DialInsecure(b.IMAP, nil)
	if err != nil {
		return nil, err
	}
	if err := c.Login("admin", "adminpw").Wait(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// CreateUser creates user/<name> on backend b as admin (which RESERVEs and
// ACTIVATEs user.<name> at the real mupdate master).
func CreateUser(b Backend, name string) error {
	c, err := Admin(b)
	if err != nil {
		return err
	}
	defer c.Logout()
	if err := c.Create("user/"+name, nil).Wait(); err != nil {
		return fmt.Errorf("cyrustest: CREATE user/%s on %s: %w", name, b.Name, err)
	}
	return nil
}

// DeleteUser deletes user/<name> on backend b as admin, granting the
// admin the 'x' right first (Cyrus admins do not have it implicitly).
func DeleteUser(b Backend, name string) error {
	c, err := Admin(b)
	if err != nil {
		return err
	}
	defer c.Logout()
	if err := c.SetACL("user/"+name, "admin", imap.RightModificationAdd, imap.RightSet("x")).Wait(); err != nil {
		return fmt.Errorf("cyrustest: SETACL user/%s admin +x on %s: %w", name, b.Name, err)
	}
	if err := c.Delete("user/" + name).Wait(); err != nil {
		return fmt.Errorf("cyrustest: DELETE user/%s on %s: %w", name, b.Name, err)
	}
	return nil
}

// Move moves user/<name> from backend from to backend to with a real
// Cyrus XFER (admin "RENAME user/x user/x to!default" on the source), which
// copies the data and updates the mupdate master (RESERVE at the
// destination, then ACTIVATE).
func Move(from, to Backend, name string) error {
	c, err := net.DialTimeout("tcp", from.IMAP, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	cmds := []string{"a LOGIN admin adminpw", fmt.Sprintf("b RENAME user/%s user/%s %s!default", name, name, to.Name), "c LOGOUT"}
	if _, err := r.ReadString('\n'); err != nil {
		return err
	}
	for _, cmd := range cmds {
		if _, err := fmt.Fprintf(c, "%s\r\n", cmd); err != nil {
			return err
		}
		tag := cmd[:1] + " "
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("cyrustest: %s: %w", cmd, err)
			}
			if strings.HasPrefix(l, tag) {
				if !strings.HasPrefix(l, tag+"OK") {
					return fmt.Errorf("cyrustest: %s on %s: %s", cmd, from.Name, strings.TrimSpace(l))
				}
				break
			}
		}
	}
	return nil
}

// Directory lists every entry the real mupdate master holds (MUPDATE
// LIST), as fsm entries.
func (m *Murder) Directory(ctx context.Context) ([]fsm.Entry, error) {
	c, err := mupdateclient.Dial(ctx, m.Master, mupdateclient.DefaultConfig())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	list, err := c.List(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]fsm.Entry, 0, len(list))
	for _, e := range list {
		st := fsm.StateActive
		if e.Reserved {
			st = fsm.StateReserved
		}
		out = append(out, fsm.Entry{Name: e.Name, State: st, Location: e.Location, ACL: e.ACL})
	}
	return out, nil
}
