package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/internal/murder"
)

// TestBenchAgainstRealCyrus runs every phase briefly against the real Cyrus
// master, and the ctl_mboxlist step on a real backend, checking the tool
// measures real work (not the figures themselves: those are printed by
// scripts/bench-mupdate.sh).
func TestBenchAgainstRealCyrus(t *testing.T) {
	m := murder.Start(t, murder.Options{Roles: []string{murder.RoleMaster, murder.RoleBE1}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	t.Run("MupdatePhasesMeasureRealOperations", func(t *testing.T) {
		cfg := defaultMupdateConfig()
		cfg.RunID = "t" + newRunID()
		cfg.Targets = []target{{Name: "cyrus", Addr: m.MasterAddr()}}
		cfg.Conns = []int{1, 3}
		// Long enough that a slow first fsync on a busy disk still leaves
		// operations inside the measuring window.
		cfg.Duration = time.Second
		cfg.StreamDuration = 200 * time.Millisecond
		cfg.StreamNoop = 50 * time.Millisecond // Cyrus batches for 5 s unless asked
		cfg.StreamWait = 10 * time.Second
		cfg.Cleanup = true
		cfg.Pids["cyrus"] = []int{os.Getpid()} // the load itself: a process that surely spends CPU
		// The same master twice: each phase must run on both before the
		// next phase starts.
		cfg.Targets = append(cfg.Targets, target{Name: "again", Addr: m.MasterAddr()})
		reps, err := runTargets(ctx, cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		rep, again := reps[0], reps[1]
		for i := range len(rep.Rows) - 1 {
			if a, b, next := rep.Rows[i], again.Rows[i], rep.Rows[i+1]; !a.Start.Before(b.Start) || !b.Start.Before(next.Start) {
				t.Errorf("phase %d started at %v on cyrus, %v on again, phase %d on cyrus at %v: not in phase order",
					i, a.Start, b.Start, i+1, next.Start)
			}
		}
		if len(rep.Rows) != 6 {
			t.Fatalf("rows = %d, want 3 phases x 2 conns", len(rep.Rows))
		}
		var cpu time.Duration
		for _, r := range rep.Rows {
			cpu += r.Use.ProcCPU
			if !r.Use.HostOK || !r.Use.ProcOK || r.Use.NodesOK {
				t.Errorf("%s at %d conns: resources %+v, want host and process CPU and no node metrics", r.Phase, r.Conns, r.Use)
			}
			if len(r.S.lat) == 0 || r.S.errors != 0 || r.S.rate() <= 0 {
				t.Errorf("%s at %d conns: ops=%d errors=%d (%v) rate=%v", r.Phase, r.Conns, len(r.S.lat), r.S.errors, r.S.firstErr, r.S.rate())
			}
		}
		if cpu <= 0 {
			t.Errorf("the load tool spent no CPU in %d phases", len(rep.Rows))
		}
		if s := rep.Stream; s == nil || s.Sent == 0 || s.Lost != 0 || len(s.Delay.lat) != s.Sent {
			t.Fatalf("stream = %+v", rep.Stream)
		}
		if c := rep.Cleanup; c == nil || c.errors != 0 || len(c.lat) == 0 {
			t.Fatalf("cleanup deleted %v", rep.Cleanup)
		}
		var out bytes.Buffer
		printTarget(&out, rep)
		if !strings.Contains(out.String(), phaseCreateNew) || !strings.Contains(out.String(), "stream delay") {
			t.Fatalf("report lacks rows:\n%s", out.String())
		}
	})

	t.Run("CtlMboxlistPushesMissingEntries", func(t *testing.T) {
		cfg := ctlConfig{N: 60, Missing: 50, CyrusBin: murder.CyrusBin, RunID: "t" + newRunID(), Client: defaultMupdateConfig().Client}
		rep, err := ctlBench(ctx, log, cfg, 0, target{Name: "cyrus", Addr: m.ConfPath(murder.RoleBE1)})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Steps) != 3 || rep.OnMaster != 60 {
			t.Fatalf("steps %+v, master lists %d of 60", rep.Steps, rep.OnMaster)
		}
		dump, err := m.CtlMboxlist(ctx, murder.RoleBE1, "-d")
		if err != nil {
			t.Fatal(err)
		}
		var entries map[string]map[string]any
		if err := json.Unmarshal([]byte(dump), &entries); err != nil {
			t.Fatalf("ctl_mboxlist -d is not JSON: %v", err)
		}
		ours := 0
		for name, e := range entries {
			if strings.HasPrefix(name, "user.cmb"+cfg.RunID) && e["partition"] == "default" {
				ours++
			}
		}
		if ours != 60 {
			t.Fatalf("backend holds %d of our 60 undumped mailboxes", ours)
		}
	})
}

func TestUndumpJSONMatchesCtlMboxlistDumpFormat(t *testing.T) {
	var got map[string]map[string]any
	if err := json.Unmarshal(undumpJSON("user.cmbx", "default", 3, 5), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("entries = %d, want 2", len(got))
	}
	e := got["user.cmbxn000003"]
	// The keys a Cyrus 3.6 `ctl_mboxlist -d` prints for each mailbox.
	for _, k := range []string{"name", "mtime", "uidvalidity", "createdmodseq", "foldermodseq", "mbtype", "partition", "acl", "uniqueid", "name_history"} {
		if _, ok := e[k]; !ok {
			t.Errorf("entry lacks %q: %v", k, e)
		}
	}
	if e["name"] != "user.cmbxn000003" || e["partition"] != "default" {
		t.Fatalf("entry = %v", e)
	}
}
