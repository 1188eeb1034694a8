package fsm

import "testing"

// TestIfRevisionAppliesOnlyToTheEntryAsItWasAtThatRevision covers the
// compare-and-set step for every op: a matching ModRevision applies as the
// unconditional command would; a stale one, or an absent entry, answers
// CodeConflict and changes nothing.
func TestIfRevisionAppliesOnlyToTheEntryAsItWasAtThatRevision(t *testing.T) {
	reserve := Command{Op: OpReserve, Name: "user.a", Location: locA, Identity: "be1", Time: 10}
	tests := []struct {
		name  string
		setup []Command // applied one per index; user.a ends at revision len(setup)
		cmd   Command
		want  Code
		gone  bool // user.a absent afterwards
	}{
		{"release of the same reservation", []Command{reserve}, Command{Op: OpDelete, Name: "user.a", IfRevision: 1}, CodeOK, true},
		{"release after activate", []Command{reserve, {Op: OpActivate, Name: "user.a", Location: locA, ACL: aclA}}, Command{Op: OpDelete, Name: "user.a", IfRevision: 1}, CodeConflict, false},
		{"release after re-reserve", []Command{reserve, reserve}, Command{Op: OpDelete, Name: "user.a", IfRevision: 1}, CodeConflict, false},
		{"release of an absent name", nil, Command{Op: OpDelete, Name: "user.a", IfRevision: 1}, CodeConflict, true},
		{"activate at the current revision", []Command{reserve}, Command{Op: OpActivate, Name: "user.a", Location: locA, IfRevision: 1}, CodeOK, false},
		{"activate at a stale revision", []Command{reserve, reserve}, Command{Op: OpActivate, Name: "user.a", Location: locA, IfRevision: 1}, CodeConflict, false},
		{"reserve at a stale revision", []Command{reserve, reserve}, Command{Op: OpReserve, Name: "user.a", Location: locA, IfRevision: 1}, CodeConflict, false},
		{"deactivate at a revision that never existed", []Command{{Op: OpActivate, Name: "user.a", Location: locA}}, Command{Op: OpDeactivate, Name: "user.a", Location: locA, IfRevision: 9}, CodeConflict, false},
		{"unconditional delete ignores revisions", []Command{reserve, reserve}, Command{Op: OpDelete, Name: "user.a"}, CodeOK, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(DefaultConfig())
			for i, c := range tt.setup {
				s.Apply(uint64(i+1), []Command{c})
			}
			before, _ := s.Get("user.a")
			rev := s.Revision()
			r := s.Apply(100, []Command{tt.cmd})[0]
			if r.Code != tt.want {
				t.Fatalf("code %v (%s), want %v", r.Code, r.Code, tt.want)
			}
			after, ok := s.Get("user.a")
			if ok == tt.gone {
				t.Fatalf("entry present=%v after, want gone=%v", ok, tt.gone)
			}
			if tt.want == CodeConflict && (s.Revision() != rev || after != before) {
				t.Fatalf("conflict changed state: revision %d->%d, %+v -> %+v", rev, s.Revision(), before, after)
			}
		})
	}
}
