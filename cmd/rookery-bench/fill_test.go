package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/rookery/rookery/internal/migrate"
	"github.com/rookery/rookery/internal/murder"
)

// TestFillGivesTheCyrusMasterExactlyItsDump proves the flat records are
// what real Cyrus stores for the JSON dump Rookery imports: after the fill,
// the master's own `ctl_mboxlist -d` prints the dump field for field, and
// the running master lists each fill server's entries over MUPDATE.
func TestFillGivesTheCyrusMasterExactlyItsDump(t *testing.T) {
	m := murder.Start(t, murder.Options{Roles: []string{murder.RoleMaster}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := m.Stop(ctx, murder.RoleMaster); err != nil {
		t.Fatal(err)
	}
	const total, servers = 50, 3
	dump := filepath.Join(t.TempDir(), "fill.json")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	args := []string{"--total", "50", "--servers", "3", "--dump", dump, "--cyrus-master-conf", m.ConfPath(murder.RoleMaster)}
	if err := runFill(ctx, log, io.Discard, args); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.CtlMboxlist(ctx, murder.RoleMaster, "-d")
	if err != nil {
		t.Fatal(err)
	}
	var gotMap, wantMap map[string]map[string]any
	if err := json.Unmarshal([]byte(got), &gotMap); err != nil {
		t.Fatalf("master's dump: %v", err)
	}
	if err := json.Unmarshal(want, &wantMap); err != nil {
		t.Fatalf("fill dump: %v", err)
	}
	if len(wantMap) != total || !reflect.DeepEqual(gotMap, wantMap) {
		t.Fatalf("master's ctl_mboxlist -d differs from the fill dump (%d entries):\n%s\nwant:\n%s", len(wantMap), got, want)
	}

	if err := m.StartRole(ctx, murder.RoleMaster); err != nil {
		t.Fatal(err)
	}
	for s, want := range []int{17, 17, 16} { // 50 spread over 3 servers
		n, err := countOnMaster(ctx, defaultMupdateConfig().Client, m.MasterAddr(), fillAt(s, servers).server+"!", "user.fill")
		if err != nil || n != want {
			t.Errorf("master lists %d (%v) at fill%d!, want %d", n, err, s, want)
		}
	}
}

func TestFillDumpImportsAsEntriesOnTheFillServers(t *testing.T) {
	var buf bytes.Buffer
	if err := writeFillDump(&buf, 10, 4); err != nil {
		t.Fatal(err)
	}
	var got []migrate.Entry
	if _, err := migrate.ReadDump(&buf, "", func(e migrate.Entry) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 {
		t.Fatalf("read %d entries, want 10", len(got))
	}
	for i, e := range got {
		f := fillAt(i, 4)
		if e.Name != f.name || e.Location != f.server+"!default" || e.ACL != f.owner+"\tlrswipkxtecdan\t" {
			t.Errorf("entry %d = %+v, want %s at %s!default", i, e, f.name, f.server)
		}
	}
}
