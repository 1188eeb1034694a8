// Package murder runs a real Cyrus IMAP murder (Debian's cyrus-imapd 3.6
// packages) for tests, using the murder-up.sh fixture in testdata/.
//
// Every murder lives in its own temporary directory and listens on free ports
// of 127.0.0.1 only, so tests can run several murders side by side and next to
// other sessions' Cyrus processes. Cyrus's `master` needs root (it drops to
// the `cyrus` user itself). Start gives one test its own murder; Shared gives
// a whole test binary one murder (Cyrus takes seconds to start). When Cyrus
// cannot run, both skip the test, except when the environment has CI=true:
// then they fail it, so a CI run never passes without exercising real Cyrus.
package murder

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rookery/rookery/internal/freeport"
)

//go:embed testdata/murder-up.sh
var murderUpScript []byte

// Roles a murder can run. Start launches them in this order.
const (
	RoleMaster = "master" // Cyrus mupdate master (mupdate -m)
	RoleBE1    = "be1"    // backend: imapd, lmtpd (+ pop3d)
	RoleBE2    = "be2"    // backend
	RoleFE     = "fe"     // frontend: proxying imapd/lmtpd (+ pop3d) and a mupdate slave
)

// AllRoles is the full murder, in start order.
var AllRoles = []string{RoleMaster, RoleBE1, RoleBE2, RoleFE}

// Credentials the fixture puts in the murder's sasldb (every user exists in
// every servername realm).
const (
	AdminUser   = "admin"
	AdminPass   = "adminpw"
	MupdateUser = "mupdate" // what backends and the slave log in to MUPDATE as
	MupdatePass = "mupdatepw"
	ProxyUser   = "proxy" // frontend -> backend proxy login
	ProxyPass   = "proxypw"
)

// Names are the Cyrus servernames of the roles. A backend's name is the
// server part of its MUPDATE locations ("be1!default").
type Names struct {
	Master, BE1, BE2, FE string
}

// Options select what Start runs. The zero value runs master, be1, be2 and fe
// wired to each other.
type Options struct {
	// Roles to start; default AllRoles.
	Roles []string
	// BackendMupdate is the "host:port" of the MUPDATE server the backends
	// use; default this murder's own master.
	BackendMupdate string
	// FrontendMupdate is the "host:port" the frontend's mupdate slave
	// connects to; default this murder's own master.
	FrontendMupdate string
	// MupdateUser/MupdatePass is the identity backends and the slave log in
	// to MUPDATE with; default mupdate/mupdatepw.
	MupdateUser, MupdatePass string
	// Names overrides servernames; empty fields keep be1, be2, fe,
	// mupdate-master.
	Names Names
	// WithPOP3 adds pop3d to fe, be1 and be2.
	WithPOP3 bool
	// PushAtStart makes backends run `ctl_mboxlist -m` when they start.
	PushAtStart bool
	// FrontendExtraHostMap lets the frontend reach backends of another murder:
	// "name:imap=PORT,name:lmtp=PORT".
	FrontendExtraHostMap string
	// StartTimeout bounds how long each port may take to open; default 30s.
	StartTimeout time.Duration
}

// Murder is a running murder. Its methods are safe for concurrent use.
type Murder struct {
	dir    string
	script string
	base   []string // KEY=value environment for murder-up.sh
	ports  *freeport.Ports

	mu    sync.Mutex
	env   map[string]string // parsed `murder-up.sh DIR env`
	roles []string          // started, in start order (StartRole adds)
}

// scriptTimeout bounds one murder-up.sh invocation (start of four roles
// waits at most StartTimeout per port; stop at most ~12 s per role).
const scriptTimeout = 3 * time.Minute

// Start launches the murder described by opts for one test: it skips or
// fails the test when Cyrus cannot run (see unavailable), and registers the
// murder's shutdown with t.Cleanup, dumping every role's log tail if the
// test failed.
func Start(t testing.TB, opts Options) *Murder {
	t.Helper()
	if skip, msg := unavailable(os.Getenv("CI"), Available(opts.WithPOP3)); msg != "" {
		if skip {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	m, err := Launch(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			m.dumpLogs(t)
		}
		if err := m.Close(); err != nil {
			t.Errorf("murder: %v", err)
		}
	})
	return m
}

// Launch starts the murder described by opts and returns it once every
// role answers on its ports (and the frontend slave has synced). Close
// stops it. Tests use Start, or Shared for one murder per test binary.
func Launch(ctx context.Context, opts Options) (*Murder, error) {
	if err := Available(opts.WithPOP3); err != nil {
		return nil, fmt.Errorf("murder: %w", err)
	}
	dir, err := makeDir()
	if err != nil {
		return nil, fmt.Errorf("murder: %w", err)
	}
	m := &Murder{dir: dir, script: filepath.Join(dir, "murder-up.sh"), roles: opts.roles()}
	if err := os.WriteFile(m.script, murderUpScript, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("murder: writing script: %w", err)
	}
	for attempt := 1; ; attempt++ {
		if m.ports, err = freeport.Take(11); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("murder: %w", err)
		}
		m.base = opts.environ(dir, m.ports.List)
		out, err := m.run(ctx, nil, "start")
		if err == nil {
			break
		}
		// Another process may have taken one of our ports between picking
		// and binding; anything else is a real failure.
		_, _ = m.run(ctx, nil, "stop")
		m.ports.Release()
		if logs := m.allLogs(); attempt == 3 || !portClash(out+logs) {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("murder: start failed: %w\n%s\n%s", err, out, tail([]byte(logs), 80))
		}
	}
	if err := m.loadEnv(ctx); err != nil {
		m.Close()
		return nil, fmt.Errorf("murder: %w", err)
	}
	return m, nil
}

// Close stops every role this murder runs and removes its state directory
// (kept when MURDER_KEEP=1, for a look after the test).
func (m *Murder) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	err := m.Stop(ctx)
	m.ports.Release()
	if os.Getenv("MURDER_KEEP") == "1" {
		return err
	}
	// Cyrus children may still be writing logs for a moment after their
	// master exits.
	for try := 0; try < 20; try++ {
		if rerr := os.RemoveAll(m.dir); rerr == nil || try == 19 {
			return errors.Join(err, rerr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// Shared is one murder for a whole test binary, started on first use,
// because starting and stopping Cyrus costs seconds per test. TestMain
// calls Close after the tests ran.
type Shared struct {
	Options Options
	// Setup runs once after the murder started (creating users, say).
	Setup func(context.Context, *Murder) error

	once sync.Once
	m    *Murder
	err  error
}

// Get returns the shared murder, starting it on first use. It skips or
// fails tb like Start when Cyrus cannot run, and fails tb when the start
// failed.
func (s *Shared) Get(tb testing.TB) *Murder {
	tb.Helper()
	if skip, msg := unavailable(os.Getenv("CI"), Available(s.Options.WithPOP3)); msg != "" {
		if skip {
			tb.Skip(msg)
		}
		tb.Fatal(msg)
	}
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
		defer cancel()
		if s.m, s.err = Launch(ctx, s.Options); s.err == nil && s.Setup != nil {
			s.err = s.Setup(ctx, s.m)
		}
	})
	if s.err != nil {
		tb.Fatal(s.err)
	}
	return s.m
}

// Close stops the murder if it was started.
func (s *Shared) Close() error {
	if s.m == nil {
		return nil
	}
	return s.m.Close()
}

// unavailable decides what a test does when Cyrus cannot run (err != nil):
// skip with a reason, or fail when ci is "true" so that CI never passes
// without real Cyrus. msg is empty when Cyrus can run.
func unavailable(ci string, err error) (skip bool, msg string) {
	if err == nil {
		return false, ""
	}
	if ci == "true" {
		return false, "real Cyrus is required in CI (CI=true) but cannot run: " + err.Error()
	}
	return true, "real Cyrus cannot run here (with CI=true this fails instead): " + err.Error()
}

func (o Options) roles() []string {
	if len(o.Roles) == 0 {
		return slices.Clone(AllRoles)
	}
	var out []string
	for _, r := range AllRoles { // keep the script's start order
		if slices.Contains(o.Roles, r) {
			out = append(out, r)
		}
	}
	return out
}

// environ builds murder-up.sh's environment. ports holds 11 free ports.
func (o Options) environ(dir string, p []int) []string {
	master := fmt.Sprintf("127.0.0.1:%d", p[0])
	be, fe := or(o.BackendMupdate, master), or(o.FrontendMupdate, master)
	beHost, bePort, _ := net.SplitHostPort(be)
	feHost, fePort, _ := net.SplitHostPort(fe)
	pop := "0"
	if o.WithPOP3 {
		pop = "1"
	}
	push := "0"
	if o.PushAtStart {
		push = "1"
	}
	wait := o.StartTimeout
	if wait <= 0 {
		wait = 30 * time.Second
	}
	kv := map[string]string{
		"MURDER_ROLES":    strings.Join(o.roles(), " "),
		"MASTER_PORT":     strconv.Itoa(p[0]),
		"BE1_IMAP_PORT":   strconv.Itoa(p[1]),
		"BE1_LMTP_PORT":   strconv.Itoa(p[2]),
		"BE2_IMAP_PORT":   strconv.Itoa(p[3]),
		"BE2_LMTP_PORT":   strconv.Itoa(p[4]),
		"FE_IMAP_PORT":    strconv.Itoa(p[5]),
		"FE_LMTP_PORT":    strconv.Itoa(p[6]),
		"FE_MUPDATE_PORT": strconv.Itoa(p[7]),
		"FE_POP3_PORT":    strconv.Itoa(p[8]),
		"BE1_POP3_PORT":   strconv.Itoa(p[9]),
		"BE2_POP3_PORT":   strconv.Itoa(p[10]),
		"WITH_POP3":       pop,
		"BE_MUPDATE_HOST": beHost, "BE_MUPDATE_PORT": bePort,
		"FE_MUPDATE_HOST": feHost, "FE_MUPDATE_PORT_TARGET": fePort,
		"MUPDATE_USER":          or(o.MupdateUser, MupdateUser),
		"MUPDATE_PASS":          or(o.MupdatePass, MupdatePass),
		"MUPDATE_PUSH_AT_START": push,
		"FE_EXTRA_HOSTMAP":      o.FrontendExtraHostMap,
		"WAIT_SECS":             strconv.Itoa(int(wait.Seconds() + 0.5)),
	}
	for k, v := range map[string]string{"MASTER_NAME": o.Names.Master, "BE1_NAME": o.Names.BE1, "BE2_NAME": o.Names.BE2, "FE_NAME": o.Names.FE} {
		if v != "" {
			kv[k] = v
		}
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "HOME=" + dir}
	for k, v := range kv {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// run invokes murder-up.sh with the base environment plus extra
// ("KEY=value", later entries win) and returns its combined output.
func (m *Murder) run(ctx context.Context, extra []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", append([]string{m.script, m.dir}, args...)...)
	cmd.Env = append(slices.Clone(m.base), extra...)
	cmd.WaitDelay = 5 * time.Second
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if err != nil {
		return buf.String(), fmt.Errorf("murder-up.sh %s: %w", strings.Join(args, " "), err)
	}
	return buf.String(), nil
}

func (m *Murder) loadEnv(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "bash", m.script, m.dir, "env")
	cmd.Env = m.base
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("murder-up.sh env: %w", err)
	}
	env := parseEnv(string(out))
	m.mu.Lock()
	m.env = env
	m.mu.Unlock()
	return nil
}

// parseEnv reads KEY=value lines; other lines are ignored.
func parseEnv(s string) map[string]string {
	env := make(map[string]string)
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && k != "" && !strings.ContainsAny(k, " \t") {
			env[k] = v
		}
	}
	return env
}

func portClash(out string) bool {
	return strings.Contains(out, "already in use") || strings.Contains(out, "Address in use")
}
