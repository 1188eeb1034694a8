package murder

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CyrusBin is where Debian installs the Cyrus programs.
const CyrusBin = "/usr/lib/cyrus/bin"

// CtlMboxlist runs `ctl_mboxlist -C DIR/<role>/imapd.conf args...` as the
// cyrus user and returns its standard output. On failure the error carries
// the exit status and standard error. Example: CtlMboxlist(ctx, "be1", "-m")
// pushes be1's mailboxes to its MUPDATE server; "-d" dumps the local
// mailboxes.db as JSON; "-u" (with stdin) undumps, see CtlMboxlistInput.
func (m *Murder) CtlMboxlist(ctx context.Context, role string, args ...string) (string, error) {
	return m.CtlMboxlistInput(ctx, role, nil, args...)
}

// CtlMboxlistInput is CtlMboxlist with stdin (for `-u`, undump).
func (m *Murder) CtlMboxlistInput(ctx context.Context, role string, stdin []byte, args ...string) (string, error) {
	argv := append([]string{"-u", "cyrus", "--", CyrusBin + "/ctl_mboxlist", "-C", m.ConfPath(role)}, args...)
	return runTool(ctx, stdin, "runuser", argv...)
}

// MupdateTest runs Cyrus's own interactive client,
// `mupdatetest -p PORT -a USER -w PASS -m PLAIN 127.0.0.1`, feeding it
// commands (tagged lines such as "L1 LIST\r\nN1 NOOP\r\n"). At end of input
// mupdatetest sends its own LOGOUT. It returns everything it printed: the
// banner, "S:"/"C:" lines of the login, then the raw responses.
func (m *Murder) MupdateTest(ctx context.Context, port int, user, pass, commands string) (string, error) {
	return MupdateTest(ctx, port, user, pass, commands)
}

// MupdateTest is the package-level form of (*Murder).MupdateTest, for a
// MUPDATE server that is not part of a murder (Rookery itself).
func MupdateTest(ctx context.Context, port int, user, pass, commands string) (string, error) {
	return runTool(ctx, []byte(commands), CyrusBin+"/mupdatetest",
		"-p", strconv.Itoa(port), "-a", user, "-w", pass, "-m", "PLAIN", "127.0.0.1")
}

func runTool(ctx context.Context, stdin []byte, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// AddUser adds a SASL user with password to the murder's sasldb, in every
// servername realm.
func (m *Murder) AddUser(ctx context.Context, user, password string) error {
	db := filepath.Join(m.dir, "sasldb2")
	for _, role := range AllRoles {
		if _, err := runTool(ctx, []byte(password), "saslpasswd2", "-f", db, "-u", m.Name(role), "-p", "-c", user); err != nil {
			return fmt.Errorf("murder: %w", err)
		}
	}
	if _, err := runTool(ctx, nil, "chown", "cyrus:mail", db); err != nil {
		return fmt.Errorf("murder: %w", err)
	}
	return nil
}
