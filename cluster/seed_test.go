package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rookery/rookery/fsm"
)

// A node opened on a seeded data dir starts from the seeded state, with
// the seeded voters and the current (checksummed) snapshot header; a
// second seed of the same dir is refused.
func TestSeededDataDirOpensAtTheSeededState(t *testing.T) {
	store := fsm.New(fsm.DefaultConfig())
	if res := store.Apply(7, []fsm.Command{activate(1), activate(2)}); res[1].Code != fsm.CodeOK {
		t.Fatalf("seed store: %v", res)
	}
	cfg := testConfig(t, "n1")
	voters := []Peer{{ID: "n1", RaftAddr: cfg.RaftAddr, APIAddr: cfg.APIAddr}}
	if err := SeedDataDir(cfg.DataDir, store, 8, voters); err != nil {
		t.Fatal(err)
	}
	if err := SeedDataDir(cfg.DataDir, store, 8, voters); err == nil || !strings.Contains(err.Error(), "empty data dir") {
		t.Fatalf("second seed: %v, want a refusal naming an empty data dir", err)
	}
	states, _ := filepath.Glob(filepath.Join(cfg.DataDir, snapshotsDir, "*", "state.bin"))
	if len(states) != 1 {
		t.Fatalf("seeded snapshots: %v", states)
	}
	b, err := os.ReadFile(states[0])
	if err != nil || len(b) < len(snapshotMagic) || [8]byte(b[:8]) != snapshotMagic {
		t.Fatalf("seeded snapshot header %q (%v), want %q", b[:min(8, len(b))], err, snapshotMagic)
	}

	cfg.Peers = voters
	tn := startNode(t, cfg)
	c := &testCluster{t: t, nodes: []*testNode{tn}}
	c.waitLeader()
	if got := tn.node.Store().Revision(); got != store.Revision() {
		t.Fatalf("revision after open %d, want the seeded %d", got, store.Revision())
	}
	if _, ok := tn.node.Store().Get(mailboxName(2)); !ok {
		t.Fatalf("%s missing after open", mailboxName(2))
	}
	if rev := mustApply(t, tn.node, activate(3))[0].Revision; rev != store.Revision()+1 {
		t.Fatalf("first write after open at revision %d, want %d", rev, store.Revision()+1)
	}
}
