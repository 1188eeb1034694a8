package gateway

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// logBuffer collects a gateway's log output.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLoginLogsNameSourceAndBackendButNoPassword: an operator reading the
// log can tell who failed to log in from where, and where each session was
// sent; passwords never appear.
func TestLoginLogsNameSourceAndBackendButNoPassword(t *testing.T) {
	m := murder(t)
	cfg := testConfig(m)
	var logs logBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	g := startGateway(t, cfg, replicaFromMaster(t, m))

	c := dial(t, g.imap)
	c.expect("* OK")
	c.send("a LOGIN mallory s3cret-guess\r\n")
	c.expect("a NO [AUTHENTICATIONFAILED]")
	c.send("b LOGIN alice alicepw\r\n")
	c.expect("b OK")

	out := logs.String()
	for _, want := range []string{
		`msg="login failed" component=gateway proto=imap user=mallory ip=127.0.0.1`,
		`msg=login component=gateway proto=imap user=alice ip=127.0.0.1 server=` + m.BE1.Name + ` backend=` + m.BE1.IMAP,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"s3cret-guess", "alicepw"} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds a password %q:\n%s", secret, out)
		}
	}
}
