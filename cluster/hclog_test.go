package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
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
		`level=DEBUG msg="debug line" subsystem=raft.net peer=n2 k=1`,
		`level=WARN msg="warn line" subsystem=raft.net peer=n2`,
		`level=ERROR msg="from a std logger" subsystem=raft.net peer=n2`,
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

func TestHclogAdapterDoesNotRepeatTheComponentKey(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil)).With("component", "cluster")
	newHclog(l, "raft").Info("entering follower state")
	if n := strings.Count(buf.String(), "component="); n != 1 {
		t.Fatalf("component= appears %d times, want once:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "subsystem=raft") {
		t.Fatalf("output lacks subsystem=raft:\n%s", buf.String())
	}
}

func TestHclogAdapterDemotesTransportShutdownNoise(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		wantError bool
	}{
		{"transport shut down: debug", raft.ErrTransportShutdown, false},
		{"wrapped shutdown: debug", fmt.Errorf("read: %w", raft.ErrTransportShutdown), false},
		{"a peer sending garbage: still an error", errors.New("msgpack decode error"), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(slog.NewTextHandler(&buf, nil)) // info and above
			newHclog(l, "raft-net").Error("failed to decode incoming command", "error", tc.err)
			if got := strings.Contains(buf.String(), "level=ERROR"); got != tc.wantError {
				t.Fatalf("logged at ERROR: %v, want %v:\n%s", got, tc.wantError, buf.String())
			}
		})
	}
}
