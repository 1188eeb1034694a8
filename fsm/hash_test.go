package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"testing"
	"time"
)

// randomCommand draws a command over a small name space, so every op meets
// every prior state (absent, RESERVED, ACTIVE, elsewhere).
func randomCommand(rng *rand.Rand) Command {
	name := fmt.Sprintf("user.u%d", rng.IntN(40))
	loc := fmt.Sprintf("be%d!p", rng.IntN(3))
	switch rng.IntN(4) {
	case 0:
		return Command{Op: OpReserve, Name: name, Location: loc, Identity: "be", Time: rng.Int64N(1e18)}
	case 1:
		return Command{Op: OpActivate, Name: name, Location: loc, ACL: fmt.Sprintf("u%d\tlrs\t", rng.IntN(5))}
	case 2:
		return Command{Op: OpDeactivate, Name: name, Location: loc, Identity: "be", Time: rng.Int64N(1e18)}
	}
	return Command{Op: OpDelete, Name: name}
}

func TestRunningHashEqualsRecomputedHashAtEveryRevision(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := New(Config{HistorySize: 50})
	views := map[uint64]*View{}
	for i := 1; i <= 3000; i++ {
		cmds := make([]Command, 1+rng.IntN(3))
		for j := range cmds {
			cmds[j] = randomCommand(rng)
		}
		s.Apply(uint64(i), cmds)
		if v := s.View(); i%7 == 0 {
			views[v.Revision()] = v
		}
	}
	if len(views) < 100 {
		t.Fatalf("only %d distinct revisions sampled", len(views))
	}
	for rev, v := range views {
		got, err := s.HashAt(rev)
		if err != nil {
			t.Fatalf("HashAt(%d): %v", rev, err)
		}
		if want := treeHash(v.tree); got != want {
			t.Fatalf("HashAt(%d) = %s, the entries at that revision hash to %s", rev, got, want)
		}
	}
	if _, _, err := s.VerifyHash(); err != nil {
		t.Fatalf("VerifyHash on an undamaged store: %v", err)
	}
}

func TestHashDependsOnEveryEntryField(t *testing.T) {
	base := Command{Op: OpActivate, Name: "user.a", Location: "be1!p", ACL: "a\tlrs\t"}
	variants := map[string]Command{
		"name":     {Op: OpActivate, Name: "user.b", Location: "be1!p", ACL: "a\tlrs\t"},
		"location": {Op: OpActivate, Name: "user.a", Location: "be2!p", ACL: "a\tlrs\t"},
		"acl":      {Op: OpActivate, Name: "user.a", Location: "be1!p", ACL: "a\tlr\t"},
		"state":    {Op: OpReserve, Name: "user.a", Location: "be1!p"},
		"by":       {Op: OpReserve, Name: "user.a", Location: "be1!p", Identity: "x"},
	}
	hashOf := func(cmds ...Command) Hash {
		s := New(Config{})
		for i, c := range cmds {
			s.Apply(uint64(i+1), []Command{c})
		}
		_, h := s.Hash()
		return h
	}
	want := hashOf(base)
	for field, c := range variants {
		if hashOf(c) == want {
			t.Errorf("changing the %s leaves the hash unchanged", field)
		}
	}
	// Same entry values, different revisions (a replay that skipped or
	// duplicated a change) must differ too.
	if hashOf(base, base) == hashOf(Command{Op: OpActivate, Name: "user.z", Location: "x!y"}, base) {
		t.Error("revisions are not part of the hash")
	}
	// Reservation time.
	r1 := Command{Op: OpReserve, Name: "user.a", Location: "be1!p", Time: 1}
	r2 := r1
	r2.Time = 2
	if hashOf(r1) == hashOf(r2) {
		t.Error("reservation time is not part of the hash")
	}
	// Peers are not entries.
	if hashOf(base) != hashOf(base, Command{Op: OpSetPeer, Name: "n1", Location: "127.0.0.1:1"}) {
		t.Error("a peer address changed the directory hash")
	}
}

func TestRestoredStoreHasTheSameHash(t *testing.T) {
	src := New(Config{})
	populateRealistic(src, 5000, 100)
	src.Apply(src.AppliedIndex()+1, []Command{{Op: OpDelete, Name: "user.u0000001"}, {Op: OpReserve, Name: "user.x", Location: "be!p", Identity: "i", Time: 5}})
	var buf bytes.Buffer
	if _, err := src.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	dst := New(Config{})
	if err := dst.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	srcRev, srcHash := src.Hash()
	dstRev, dstHash := dst.Hash()
	if srcRev != dstRev || srcHash != dstHash {
		t.Fatalf("restored (%d, %s), source (%d, %s)", dstRev, dstHash, srcRev, srcHash)
	}
	// Both keep the same hash as they apply the same changes.
	c := []Command{{Op: OpActivate, Name: "user.y", Location: "be!p"}}
	src.Apply(src.AppliedIndex()+1, c)
	dst.Apply(dst.AppliedIndex()+1, c)
	h1, err1 := src.HashAt(srcRev + 1)
	h2, err2 := dst.HashAt(srcRev + 1)
	if err1 != nil || err2 != nil || h1 != h2 {
		t.Fatalf("after one more change: %s (%v) vs %s (%v)", h1, err1, h2, err2)
	}
}

func TestHashAtAnswersForTheWindowOnly(t *testing.T) {
	s := New(Config{HistorySize: -1}) // the hash window does not depend on history
	const total = HashWindow + 10
	for i := 1; i <= total; i++ {
		s.Apply(uint64(i), []Command{{Op: OpActivate, Name: fmt.Sprintf("user.u%d", i%3), Location: "be!p"}})
	}
	oldest := uint64(total - HashWindow + 1)
	for _, tc := range []struct {
		rev uint64
		ok  bool
	}{
		{0, false}, {oldest - 1, false}, {oldest, true}, {total - 1, true}, {total, true}, {total + 1, false},
	} {
		_, err := s.HashAt(tc.rev)
		if tc.ok != (err == nil) {
			t.Fatalf("HashAt(%d): err %v, want ok=%v", tc.rev, err, tc.ok)
		}
		var he *HashUnavailableError
		if err != nil && (!errors.As(err, &he) || !errors.Is(err, ErrHashUnavailable) || *he != (HashUnavailableError{tc.rev, oldest, total})) {
			t.Fatalf("HashAt(%d): %#v", tc.rev, err)
		}
	}
	// A fresh store names its (empty) hash at revision 0.
	if h, err := New(Config{}).HashAt(0); err != nil || h != (Hash{}) {
		t.Fatalf("empty store: %s, %v", h, err)
	}
}

func TestVerifyHashDetectsEntriesChangedOutsideApply(t *testing.T) {
	s := New(Config{})
	populateRealistic(s, 2000, 50)
	// Damage one entry in memory as a stray write or a bit flip would: its
	// location changes, nothing else does.
	s.mu.Lock()
	victim, _ := s.st.tree.Get(probe(DBNameKey("user.u0000101.Sent")))
	damaged := *victim
	m := *victim.meta
	m.loc = "imap-backend-99!default"
	damaged.meta = &m
	s.st.tree.ReplaceOrInsert(&damaged)
	s.mu.Unlock()

	rev, _, err := s.VerifyHash()
	var me *HashMismatchError
	if !errors.As(err, &me) || !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("VerifyHash after damage: %v", err)
	}
	if me.Revision != rev || me.Maintained == me.Computed {
		t.Fatalf("mismatch report %+v", me)
	}
}

func TestHashRoundTripsThroughBytes(t *testing.T) {
	h := Hash{Hi: 0x0102030405060708, Lo: 0xf0e0d0c0b0a09080}
	got, err := HashFromBytes(h.Bytes())
	if err != nil || got != h {
		t.Fatalf("%s -> %s, %v", h, got, err)
	}
	if h.String() != "0102030405060708f0e0d0c0b0a09080" {
		t.Fatalf("String %s", h)
	}
	if _, err := HashFromBytes(make([]byte, 15)); err == nil {
		t.Fatal("15 bytes accepted")
	}
}

func TestDigestChangesWithEveryInputBit(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 31, 100} {
		in := make([]byte, n)
		for i := range in {
			in[i] = byte(i * 37)
		}
		base := digest(in)
		total := 0
		for bit := 0; bit < n*8; bit++ {
			in[bit/8] ^= 1 << (bit % 8)
			d := digest(in)
			in[bit/8] ^= 1 << (bit % 8)
			if d.Hi == base.Hi || d.Lo == base.Lo {
				t.Fatalf("len %d bit %d: a lane did not change", n, bit)
			}
			total += bits.OnesCount64(d.Hi^base.Hi) + bits.OnesCount64(d.Lo^base.Lo)
		}
		// Avalanche: a flipped input bit flips about half the output bits.
		if n > 0 {
			if avg := float64(total) / float64(n*8); avg < 54 || avg > 74 {
				t.Errorf("len %d: %.1f of 128 output bits flip per input bit, want about 64", n, avg)
			}
		}
		if n > 0 && digest(in[:n-1]) == base {
			t.Fatalf("len %d: a shorter input collides", n)
		}
	}
	seen := make(map[uint64]bool, 1<<18)
	for i := 0; i < 1<<18; i++ {
		d := digest([]byte(fmt.Sprintf("user.u%07d", i)))
		if seen[d.Hi] || seen[d.Lo^1<<63] {
			t.Fatalf("64-bit lane collision at %d", i)
		}
		seen[d.Hi], seen[d.Lo^1<<63] = true, true
	}
}

// BenchmarkRecordHash measures what the running hash adds per change:
// one entry digest out, one in.
func BenchmarkRecordHash(b *testing.B) {
	cmds := realisticCommands(1000)
	s := New(Config{})
	populate(s, cmds, 100)
	var recs []*record
	s.st.tree.Ascend(func(r *record) bool { recs = append(recs, r); return true })
	b.ResetTimer()
	start := time.Now()
	var h Hash
	for i := 0; i < b.N; i++ {
		h = h.add(recordHash(recs[i%len(recs)]))
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/entry")
	_ = h
}
