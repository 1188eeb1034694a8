package murder

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// LogPath is the file that receives every syslog line of a role (the
// fixture's LD_PRELOAD shim redirects syslog there).
func (m *Murder) LogPath(role string) string { return filepath.Join(m.dir, role, "log", "syslog") }

// Log returns a role's syslog content from byte offset from on (0 = all).
func (m *Murder) Log(role string, from int64) (string, error) {
	b, err := os.ReadFile(m.LogPath(role))
	if err != nil {
		return "", fmt.Errorf("murder: reading %s log: %w", role, err)
	}
	if from > int64(len(b)) {
		from = int64(len(b))
	}
	return string(b[from:]), nil
}

// LogSize is the current size of a role's syslog; pass it to WaitForLog to
// look only at lines written after this point.
func (m *Murder) LogSize(role string) int64 {
	fi, err := os.Stat(m.LogPath(role))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// WaitForLog polls a role's syslog (from byte offset from on) until it
// contains substr, for example "mailbox list synchronization complete" on fe.
func (m *Murder) WaitForLog(ctx context.Context, role, substr string, from int64) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if s, err := m.Log(role, from); err == nil && bytes.Contains([]byte(s), []byte(substr)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("murder: %s log never showed %q: %w", role, substr, ctx.Err())
		case <-tick.C:
		}
	}
}

// dumpLogs writes the tail of every role's syslog and master output to the
// test log; used when a test failed.
func (m *Murder) dumpLogs(t testing.TB) {
	for _, role := range m.Roles() {
		for _, f := range []string{"syslog", "master.out"} {
			b, err := os.ReadFile(filepath.Join(m.dir, role, "log", f))
			if err != nil || len(b) == 0 {
				continue
			}
			t.Logf("murder: --- %s/log/%s (last lines) ---\n%s", role, f, tail(b, 40))
		}
	}
}

func (m *Murder) allLogs() string {
	var sb bytes.Buffer
	for _, role := range m.Roles() {
		for _, f := range []string{"syslog", "master.out"} {
			b, _ := os.ReadFile(filepath.Join(m.dir, role, "log", f))
			sb.Write(b)
		}
	}
	return sb.String()
}

func tail(b []byte, lines int) []byte {
	b = bytes.TrimRight(b, "\n")
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			lines--
			if lines == 0 {
				return b[i+1:]
			}
		}
	}
	return b
}
