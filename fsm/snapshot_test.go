package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"slices"
	"strings"
	"testing"
)

// dump is everything observable about a store, for equality checks.
type dump struct {
	Revision, Applied uint64
	Entries           []Entry
	Stats             Stats
	Peers             map[string]string
}

func dumpStore(s *Store) dump {
	v := s.View()
	var es []Entry
	v.ScanName("", func(e Entry) bool { es = append(es, e); return true })
	return dump{v.Revision(), v.AppliedIndex(), es, v.Stats(), s.Peers()}
}

func equalDumps(a, b dump) bool {
	if a.Revision != b.Revision || a.Applied != b.Applied || !slices.Equal(a.Entries, b.Entries) ||
		a.Stats.Active != b.Stats.Active || a.Stats.Reserved != b.Stats.Reserved ||
		!slices.Equal(a.Stats.Servers, b.Stats.Servers) || len(a.Peers) != len(b.Peers) {
		return false
	}
	for k, v := range a.Peers {
		if b.Peers[k] != v {
			return false
		}
	}
	return true
}

func sampleStore(t testing.TB) *Store {
	t.Helper()
	s := New(DefaultConfig())
	s.Apply(3, []Command{
		{Op: OpSetPeer, Name: "n2", Location: "127.0.0.1:7002"},
		{Op: OpSetPeer, Name: "n1", Location: "127.0.0.1:7001"},
		{Op: OpActivate, Name: "user.alice", Location: "be1!default", ACL: aclA},
		{Op: OpActivate, Name: "user.alice.Sent", Location: "be1!default", ACL: aclA},
		{Op: OpReserve, Name: "example.com!user.bob", Location: "be2!", Identity: "be2", Time: 12345},
		{Op: OpActivate, Name: "user.carol", Location: "a!b!c", ACL: strings.Repeat("x", 5000)},
		{Op: OpDelete, Name: "user.carol"},
		{Op: OpActivate, Name: "DELETED.user.x.65E33B49", Location: "be1!default"},
		{Op: OpDeactivate, Name: "user.alice", Location: "be1!default", Identity: "be1", Time: -5},
	})
	return s
}

func TestSnapshotRestoreRoundTripsEverything(t *testing.T) {
	s := sampleStore(t)
	b := snapshotBytes(t, s.Snapshot())
	r := New(DefaultConfig())
	if err := r.Restore(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if a, c := dumpStore(s), dumpStore(r); !equalDumps(a, c) {
		t.Fatalf("restored differs\n orig %+v\n rest %+v", a, c)
	}
	if !bytes.Equal(b, snapshotBytes(t, r.Snapshot())) {
		t.Fatal("snapshot of restored store differs from the original snapshot")
	}
	// The restored store keeps applying like the original.
	cmd := []Command{{Op: OpReserve, Name: "user.dave", Location: "be3!x"}}
	if x, y := s.Apply(4, cmd), r.Apply(4, cmd); x[0] != y[0] {
		t.Fatalf("results differ %+v %+v", x, y)
	}
	if !equalDumps(dumpStore(s), dumpStore(r)) {
		t.Fatal("diverged after restore")
	}
}

func TestSnapshotIsPointInTimeWhileApplyContinues(t *testing.T) {
	s := sampleStore(t)
	sn := s.Snapshot()
	want := snapshotBytes(t, sn)
	rev := sn.Revision()
	s.Apply(4, []Command{
		{Op: OpDelete, Name: "user.alice.Sent"},
		{Op: OpActivate, Name: "user.new", Location: "be9!"},
		{Op: OpSetPeer, Name: "n3", Location: "127.0.0.1:7003"},
	})
	if got := snapshotBytes(t, sn); !bytes.Equal(got, want) || sn.Revision() != rev {
		t.Fatal("snapshot changed after later Applies")
	}
}

func TestEmptyStoreSnapshotRestores(t *testing.T) {
	b := snapshotBytes(t, New(DefaultConfig()).Snapshot())
	s := sampleStore(t)
	if err := s.Restore(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if s.Revision() != 0 || s.View().Len() != 0 || len(s.Peers()) != 0 || s.Stats().Active != 0 {
		t.Fatal("restore of empty snapshot left state behind")
	}
}

// reseal recomputes the checksum trailer so a test can reach the checks
// behind it.
func reseal(b []byte) []byte {
	body := b[:len(b)-4]
	out := append([]byte(nil), body...)
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(body, castagnoli))
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestRestoreRejectsBadInputAndLeavesStoreUnchanged(t *testing.T) {
	good := snapshotBytes(t, sampleStore(t).Snapshot())
	flip := func(i int) []byte { b := slices.Clone(good); b[i] ^= 0x40; return b }
	version := slices.Clone(good)
	version[len(snapshotMagic)] = 2
	ioErr := errors.New("disk on fire")

	tests := []struct {
		name    string
		r       io.Reader
		corrupt bool
	}{
		{"empty", bytes.NewReader(nil), true},
		{"wrong magic", bytes.NewReader(append([]byte("NOTASNAP"), good[8:]...)), true},
		{"wrong version", bytes.NewReader(version), true},
		{"wrong version resealed", bytes.NewReader(reseal(version)), true},
		{"flipped byte in entries", bytes.NewReader(flip(len(good) / 2)), true},
		{"flipped checksum", bytes.NewReader(flip(len(good) - 1)), true},
		{"trailing data", bytes.NewReader(append(slices.Clone(good), 0)), true},
		{"reader error", io.MultiReader(bytes.NewReader(good[:40]), errReader{ioErr}), false},
	}
	for cut := 1; cut < len(good); cut += 7 {
		tests = append(tests, struct {
			name    string
			r       io.Reader
			corrupt bool
		}{"truncated", bytes.NewReader(good[:cut]), true})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(DefaultConfig())
			s.Apply(1, []Command{{Op: OpActivate, Name: "user.keep", Location: "be1!x"}, {Op: OpSetPeer, Name: "n9", Location: "127.0.0.1:9"}})
			before := dumpStore(s)
			err := s.Restore(tc.r)
			if err == nil {
				t.Fatal("Restore accepted bad input")
			}
			if tc.corrupt != errors.Is(err, ErrCorrupt) {
				t.Fatalf("err %v, corrupt=%v", err, tc.corrupt)
			}
			if !tc.corrupt && !errors.Is(err, ioErr) {
				t.Fatalf("err %v does not wrap the reader's error", err)
			}
			if !equalDumps(before, dumpStore(s)) {
				t.Fatal("failed Restore changed the store")
			}
		})
	}
}

// TestRestoreRejectsResealedSemanticCorruption builds structurally valid,
// correctly checksummed snapshots whose content breaks an invariant.
func TestRestoreRejectsResealedSemanticCorruption(t *testing.T) {
	s := New(DefaultConfig())
	s.Apply(1, []Command{{Op: OpActivate, Name: "user.a", Location: "l"}, {Op: OpActivate, Name: "user.b", Location: "l"}})
	good := snapshotBytes(t, s.Snapshot())
	// Locate the two key suffixes "user\x1fa" and "b" in the entry section.
	i := bytes.Index(good, []byte("user\x1fa"))
	if i < 0 {
		t.Fatal("key not found")
	}
	mutate := map[string]func([]byte){
		"name with NUL":      func(b []byte) { b[i+5] = 0 },
		"non-canonical key":  func(b []byte) { b[i+4] = '!' }, // "user!a" must be keyed "user\x1da"
		"keys out of order":  func(b []byte) { b[i+5] = 'c' }, // user.c then user.b
		"bad meta reference": func(b []byte) { b[i+6] = 9 },
		"bad state":          func(b []byte) { b[i+7] = 9 },
		"revision too large": func(b []byte) { b[len(snapshotMagic)+1] = 1 }, // revision 2 -> 1
	}
	for name, m := range mutate {
		t.Run(name, func(t *testing.T) {
			b := slices.Clone(good)
			m(b)
			err := New(DefaultConfig()).Restore(bytes.NewReader(reseal(b)))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err %v, want ErrCorrupt", err)
			}
			t.Log(err)
		})
	}
}
