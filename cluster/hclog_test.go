package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHclogAdapterMapsLevelsNamesAndArgs(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := newHclog(l, "raft").Named("net").With("peer", "n2")

	h.Trace("dropped: below debug")
	h.Debug("debug line", "k", 1)
	h.Warn("warn line")
	h.StandardLogger(nil).Print("[ERR] from a std logger")

	out := buf.String()
	for _, want := range []string{
		`level=DEBUG msg="debug line" component=raft.net peer=n2 k=1`,
		`level=WARN msg="warn line" component=raft.net peer=n2`,
		`level=ERROR msg="from a std logger" component=raft.net peer=n2`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "below debug") {
		t.Errorf("trace line logged at debug level:\n%s", out)
	}
	if h.IsTrace() || !h.IsDebug() || h.GetLevel() != hclog.Debug {
		t.Errorf("level queries: trace %v debug %v level %v", h.IsTrace(), h.IsDebug(), h.GetLevel())
	}
}

func TestHclogAdapterRendersFmtArguments(t *testing.T) {
	var buf bytes.Buffer
	h := newHclog(slog.New(slog.NewTextHandler(&buf, nil)), "raft")
	h.Info("initial configuration", "servers", hclog.Fmt("%+v", []string{"n1", "n2"}))
	if want := `servers="[n1 n2]"`; !strings.Contains(buf.String(), want) {
		t.Fatalf("output lacks %q:\n%s", want, buf.String())
	}
}
