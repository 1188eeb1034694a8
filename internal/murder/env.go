package murder

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
)

// Available reports why real Cyrus cannot run here, or nil when it can.
func Available(withPOP3 bool) error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("needs Linux with Debian's Cyrus packages, this is %s", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root: Cyrus master starts as root and drops to user cyrus")
	}
	if _, err := user.Lookup("cyrus"); err != nil {
		return fmt.Errorf("user cyrus missing (run scripts/install-deps.sh): %w", err)
	}
	bins := []string{"master", "mupdate", "imapd", "lmtpd", "ctl_cyrusdb", "ctl_mboxlist", "mupdatetest"}
	if withPOP3 {
		bins = append(bins, "pop3d")
	}
	for _, b := range bins {
		if fi, err := os.Stat(filepath.Join(CyrusBin, b)); err != nil || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%s/%s missing (run scripts/install-deps.sh)", CyrusBin, b)
		}
	}
	for _, tool := range []string{"bash", "saslpasswd2", "sasldblistusers2", "cc", "runuser", "setsid"} {
		if _, err := lookPath(tool); err != nil {
			return fmt.Errorf("%s missing (run scripts/install-deps.sh): %w", tool, err)
		}
	}
	return nil
}

func lookPath(name string) (string, error) {
	for _, d := range []string{"/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

// makeDir creates the murder's state directory. It must be traversable by the
// cyrus user all the way down, and short: Cyrus's unix socket paths
// (DIR/<role>/conf/socket/lmtp) must stay under ~100 bytes, which
// t.TempDir() (named after the test) does not guarantee.
func makeDir() (string, error) {
	base := os.TempDir()
	if !traversable(base) || len(base) > 40 {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "murder")
	if err != nil {
		return "", fmt.Errorf("creating state dir: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("chmod state dir: %w", err)
	}
	return dir, nil
}

// traversable reports whether every directory from / down to dir lets
// "others" (the cyrus user) search it.
func traversable(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}
