package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/cluster"
)

// TestRookeryctlOperatorOutput covers what an operator reads: a watch
// that replays from the oldest kept change under a header, snapshot
// status as JSON and with its peers listed, and the default endpoints
// being the whole `make run` cluster.
func TestRookeryctlOperatorOutput(t *testing.T) {
	bin := buildCtl(t)
	c := apitest.Start(t, apitest.Options{Nodes: 1, Cluster: func(_ int, cfg *cluster.Config) { cfg.FSM.HistorySize = 4 }})
	eps := "--endpoints=" + strings.Join(c.Endpoints(), ",")
	for i := 1; i <= 6; i++ {
		ctl(t, bin, eps, "reserve", fmt.Sprintf("user.u%d", i), "be1!default").expect(t, "reserve", exitOK, "OK revision")
	}

	// History keeps revisions 3..6: --from oldest replays exactly those.
	r := ctl(t, bin, eps, "watch", "--from", "oldest", "--count", "4")
	r.expect(t, "watch --from oldest", exitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	want := []string{watchHeader, "3\tRESERVE\tuser.u3", "4\tRESERVE\tuser.u4", "5\tRESERVE\tuser.u5", "6\tRESERVE\tuser.u6"}
	if len(lines) != len(want) {
		t.Fatalf("watch --from oldest printed %q, want lines starting %q", lines, want)
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Fatalf("line %d: %q, want it to start with %q (all: %q)", i, lines[i], want[i], lines)
		}
	}
	ctl(t, bin, eps, "watch", "--from", "yesterday").expect(t, "watch --from junk", exitUsage, `--from wants a revision, "oldest" or "now"`)

	snap := filepath.Join(t.TempDir(), "s.snap")
	ctl(t, bin, eps, "snapshot", "save", snap).expect(t, "snapshot save", exitOK)
	r = ctl(t, bin, "--output", "json", "snapshot", "status", snap)
	r.expect(t, "snapshot status json", exitOK)
	var st struct {
		Revision  uint64            `json:"revision"`
		Mailboxes int               `json:"mailboxes"`
		Reserved  uint64            `json:"reserved"`
		Peers     map[string]string `json:"peers"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Revision != 6 || st.Reserved != 6 || st.Peers[c.Nodes[0].ID] != c.Nodes[0].APIAddr {
		t.Fatalf("snapshot status json: %v %+v from %s", err, st, r.stdout)
	}
	r = ctl(t, bin, "snapshot", "status", snap)
	r.expect(t, "snapshot status table", exitOK, "peers", c.Nodes[0].ID+" "+c.Nodes[0].APIAddr)
	if strings.Contains(r.stdout, "map[") {
		t.Fatalf("snapshot status shows a Go map:\n%s", r.stdout)
	}

	ctl(t, bin, "help").expect(t, "help", exitOK, "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103")
}
