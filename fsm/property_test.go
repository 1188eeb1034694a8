package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

var trickyNames = []string{
	"user.a", "user.a.b", "user.a-b", "user.ab", "user.a.b.c", "user.b",
	"example.com!user.a", "example.com!user.a.b", "example.com.au!user.a", "example.com",
	"shared", "DELETED.user.a.65E33B49", "a!b!c",
}

var (
	propLocations = []string{"be1!default", "be2!default", "be2!", "be10!ssd", "a!b!c", "noexcl"}
	propACLs      = []string{"", "alice\tlrswipkxtecdan\t", "anyone\tp\t"}
)

func randomBatch(r *rand.Rand) []Command {
	batch := make([]Command, 1+r.IntN(4))
	for i := range batch {
		c := Command{
			Op:       Op(1 + r.IntN(4)),
			Name:     trickyNames[r.IntN(len(trickyNames))],
			Location: propLocations[r.IntN(len(propLocations))],
			ACL:      propACLs[r.IntN(len(propACLs))],
			Identity: []string{"be1", "be2", ""}[r.IntN(3)],
			Time:     r.Int64N(1 << 40),
		}
		switch r.IntN(20) {
		case 0:
			c.Op = OpSetPeer
			c.Name = fmt.Sprintf("n%d", r.IntN(3))
			c.Location = []string{"", "127.0.0.1:7001", "127.0.0.1:7002"}[r.IntN(3)]
		case 1:
			c.Name = "bad\nname" // invalid: must change nothing
		}
		batch[i] = c
	}
	return batch
}

// model is the directory semantics written as plainly as possible.
type model struct {
	rev     uint64
	entries map[string]Entry
}

func (m *model) apply(c Command) Result {
	if Validate(c) != nil {
		return Result{Code: CodeInvalid}
	}
	old, ok := m.entries[c.Name]
	next := Entry{Name: c.Name, Location: c.Location, CreateRevision: m.rev + 1, ModRevision: m.rev + 1}
	if ok {
		next.CreateRevision = old.CreateRevision
	}
	reserve := func() {
		next.State, next.ReservedBy, next.ReservedAt = StateReserved, c.Identity, c.Time
	}
	switch c.Op {
	case OpSetPeer:
		return Result{Code: CodeOK}
	case OpReserve:
		if ok && old.Location != c.Location {
			return Result{Code: CodeExists}
		}
		reserve()
	case OpActivate:
		next.State, next.ACL = StateActive, c.ACL
	case OpDeactivate:
		if !ok {
			return Result{Code: CodeNotFound}
		}
		if old.State != StateActive {
			return Result{Code: CodeNotActive}
		}
		reserve()
	case OpDelete:
		if !ok {
			return Result{Code: CodeNotFound}
		}
	}
	m.rev++
	if c.Op == OpDelete {
		delete(m.entries, c.Name)
	} else {
		m.entries[c.Name] = next
	}
	return Result{Code: CodeOK, Revision: m.rev}
}

func (m *model) sorted() []Entry {
	var es []Entry
	for _, e := range m.entries {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b Entry) int { return Compare(a.Name, b.Name) })
	return es
}

func TestRandomSequencesMatchModel(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		s := New(DefaultConfig())
		m := &model{entries: map[string]Entry{}}
		for idx := uint64(1); idx <= 300; idx++ {
			batch := randomBatch(r)
			got := s.Apply(idx, batch)
			for i, c := range batch {
				if want := m.apply(c); got[i] != want {
					t.Fatalf("seed %d index %d cmd %+v: got %+v want %+v", seed, idx, c, got[i], want)
				}
			}
		}
		checkInvariants(t, s)
		if d := dumpStore(s); !slices.Equal(d.Entries, m.sorted()) {
			t.Fatalf("seed %d: state differs from model\n got %+v\nwant %+v", seed, d.Entries, m.sorted())
		}
	}
}

// TestSnapshotMidwayRestoredStoreConverges applies random batches to one
// store, snapshots it midway, keeps applying while the snapshot is written
// (proving point-in-time), restores a second store from it and replays the
// rest there: both end identical, with identical event streams from the
// snapshot revision on and identical snapshot bytes.
func TestSnapshotMidwayRestoredStoreConverges(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 99))
		const total = 400
		mid := 1 + r.IntN(total-1)
		// Half the runs keep every event, half compact mid-stream.
		cfg := Config{HistorySize: 50 + r.IntN(200)}
		if seed%2 == 0 {
			cfg.HistorySize = 10 * total
		}
		batches := make([][]Command, total)
		for i := range batches {
			batches[i] = randomBatch(r)
		}

		a := New(cfg)
		for i := 0; i < mid; i++ {
			a.Apply(uint64(i+1), batches[i])
		}
		sn := a.Snapshot()
		var buf bytes.Buffer
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // applies race with the snapshot write
			defer wg.Done()
			for i := mid; i < total; i++ {
				a.Apply(uint64(i+1), batches[i])
			}
		}()
		if _, err := sn.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		wg.Wait()

		b := New(cfg)
		if err := b.Restore(&buf); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if b.Revision() != sn.Revision() || b.AppliedIndex() != uint64(mid) {
			t.Fatalf("seed %d: restored at revision %d index %d, snapshot %d index %d", seed, b.Revision(), b.AppliedIndex(), sn.Revision(), mid)
		}
		for i := mid; i < total; i++ {
			b.Apply(uint64(i+1), batches[i])
		}

		checkInvariants(t, a)
		checkInvariants(t, b)
		if da, db := dumpStore(a), dumpStore(b); !equalDumps(da, db) {
			t.Fatalf("seed %d: states differ\n a %+v\n b %+v", seed, da, db)
		}
		ea, errA := a.EventsSince(sn.Revision(), 0)
		eb, errB := b.EventsSince(sn.Revision(), 0)
		if fmt.Sprint(errA) != fmt.Sprint(errB) || !slices.Equal(ea, eb) {
			t.Fatalf("seed %d: event streams differ (%v, %v)", seed, errA, errB)
		}
		if seed%2 == 0 && (errA != nil || uint64(len(ea)) != a.Revision()-sn.Revision()) {
			t.Fatalf("seed %d: full history run lost events: %d, %v", seed, len(ea), errA)
		}
		for from := uint64(0); from <= a.Revision()+1; from++ {
			ea, errA := a.EventsSince(from, 3)
			eb, errB := b.EventsSince(from, 3)
			if fmt.Sprint(errA) != fmt.Sprint(errB) || !slices.Equal(ea, eb) {
				t.Fatalf("seed %d: EventsSince(%d) differs (%v, %v)", seed, from, errA, errB)
			}
		}
		if !bytes.Equal(snapshotBytes(t, a.Snapshot()), snapshotBytes(t, b.Snapshot())) {
			t.Fatalf("seed %d: snapshot bytes differ for equal states", seed)
		}
	}
}

func TestConcurrentReadersDuringApply(t *testing.T) {
	s := New(Config{HistorySize: 100})
	r := rand.New(rand.NewPCG(5, 5))
	batches := make([][]Command, 500)
	for i := range batches {
		batches[i] = randomBatch(r)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				v := s.View()
				n := 0
				v.ScanName("user.", func(Entry) bool { n++; return true })
				s.Get("user.a")
				s.EventsSince(s.Revision()/2, 10)
				snapshotBytes(t, s.Snapshot())
				_ = v.Stats()
			}
		}()
	}
	for i, b := range batches {
		s.Apply(uint64(i+1), b)
	}
	close(done)
	wg.Wait()
}
