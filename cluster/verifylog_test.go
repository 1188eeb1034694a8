package cluster

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
)

// A follower that installed a snapshot keeps its older entries below the
// snapshot and appends after it, leaving a hole raft never reads. The
// start-up check must accept that hole (a jepsen kill run found a node
// refusing to start on it) and still refuse one above the snapshot.
func TestVerifyLogAcceptsAHoleOnlyBelowTheNewestSnapshot(t *testing.T) {
	logs := raft.NewInmemStore()
	for _, i := range []uint64{1, 2, 3, 4, 5, 9, 10, 11, 12} {
		data := fsm.EncodeCommands([]fsm.Command{activate(int(i))})
		if err := logs.StoreLog(&raft.Log{Index: i, Term: 2, Type: raft.LogCommand, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	fileOf := func(uint64) string { return raftDBName }
	logger := slog.New(slog.DiscardHandler)
	tests := []struct {
		snapIndex uint64
		wantErr   string
	}{
		{snapIndex: 8},
		{snapIndex: 10},
		{snapIndex: 6, wantErr: "damaged at entry 7 of 1..12"},
		{snapIndex: 0, wantErr: "damaged at entry 6 of 1..12"},
	}
	for _, tc := range tests {
		err := verifyLog(logs, tc.snapIndex, fileOf, logger)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("snapshot at %d: %v, want the hole below it accepted", tc.snapIndex, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("snapshot at %d: %v, want an error containing %q", tc.snapIndex, err, tc.wantErr)
		}
	}
}
