package fsm

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/google/btree"
)

// Config tunes a Store.
type Config struct {
	// HistorySize is how many recent events are kept for watchers resuming
	// from a revision. Older revisions answer ErrCompacted. Zero selects
	// the default; a negative value keeps no history (every watcher that
	// falls behind must re-read a View).
	HistorySize int
}

// DefaultConfig returns the defaults: 100k events of history.
func DefaultConfig() Config { return Config{HistorySize: 100_000} }

func (c Config) historySize() int {
	switch {
	case c.HistorySize == 0:
		return DefaultConfig().HistorySize
	case c.HistorySize < 0:
		return 0
	}
	return c.HistorySize
}

// ErrCompacted is wrapped by the error EventsSince returns when the
// requested revision is older than the kept history.
var ErrCompacted = errors.New("fsm: revision compacted")

// CompactedError carries the oldest revision still resumable.
type CompactedError struct {
	Requested uint64 // the from-revision asked for
	Compact   uint64 // oldest from-revision that EventsSince can serve
	Current   uint64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("fsm: revision %d compacted (history starts after %d, current %d)", e.Requested, e.Compact, e.Current)
}
func (e *CompactedError) Unwrap() error { return ErrCompacted }

// btreeDegree gives nodes of up to 63 pointers: shallow trees (five levels
// at ten million entries) and about 1 KiB copied per node on copy-on-write.
const btreeDegree = 32

// Store is the directory state machine. Apply is called by one goroutine
// (raft's FSM loop); every other method is safe for concurrent use.
//
// The entries live in a copy-on-write B-tree keyed by DBNameKey, so in-order
// iteration is Cyrus 3.6 mailboxes.db order and View/Snapshot are O(1)
// clones that stay valid while Apply goes on.
type Store struct {
	cfg Config

	// mu guards everything below. Point reads take it shared; Apply,
	// View, Snapshot and Restore take it exclusively (btree Clone mutates
	// the copy-on-write context of the live tree).
	mu       sync.RWMutex
	st       state
	restores uint64 // Restores so far: a compaction built before one is stale
	changed  chan struct{}
}

// state is everything a snapshot carries; Restore builds a new one and swaps
// it in whole.
type state struct {
	tree     *btree.BTreeG[*record]
	ix       index // secondary indexes over tree (index.go)
	revision uint64
	applied  uint64
	peers    map[string]string
	in       interner
	stats    serverCounts
	// statsCache is the sorted Stats of the current state, built on
	// demand and dropped by any change, so View stays cheap.
	statsCache *Stats
	hist       history
	sum        stateHash // the entries' hash, per revision (hash.go)
	// churn counts the entries inserted and deleted since the trees were
	// last built dense (Restore, compact).
	churn int
}

func newState(historySize int) state {
	return state{
		tree:  btree.NewG(btreeDegree, lessRecord),
		ix:    newIndex(),
		peers: map[string]string{},
		in:    newInterner(),
		stats: serverCounts{},
		hist:  history{size: historySize},
	}
}

// New returns an empty store.
func New(cfg Config) *Store {
	return &Store{
		cfg:     cfg,
		st:      newState(cfg.historySize()),
		changed: make(chan struct{}),
	}
}

// Apply applies the commands of one raft log entry at the given log index,
// in order, and returns one result each.
//
// The whole entry is applied under one lock, so readers see all of it or
// none. An invalid command answers CodeInvalid and changes nothing; Apply
// never panics on a decoded log entry. index becomes AppliedIndex when it is
// larger than the current one, and then Changed is signalled.
func (s *Store) Apply(index uint64, cmds []Command) []Result {
	rs := make([]Result, len(cmds))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range cmds {
		rs[i] = s.st.apply(&cmds[i])
	}
	if index > s.st.applied {
		s.st.applied = index
		s.notifyLocked()
	}
	return rs
}

func (s *Store) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Revision is the revision of the last change applied.
func (s *Store) Revision() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.revision
}

// AppliedIndex is the raft log index of the last entry applied.
func (s *Store) AppliedIndex() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.applied
}

// Get returns the current entry for name.
func (s *Store) Get(name string) (Entry, bool) {
	key := DBNameKey(name)
	s.mu.RLock()
	r, ok := s.st.tree.Get(probe(key))
	s.mu.RUnlock()
	if !ok {
		return Entry{}, false
	}
	return r.entry(name), true
}

// Len returns the number of entries.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.tree.Len()
}

// View returns a consistent point-in-time view, O(1); writes continue.
func (s *Store) View() *View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &View{
		tree:     s.st.tree.Clone(),
		ix:       s.st.ix.clone(),
		revision: s.st.revision,
		applied:  s.st.applied,
		stats:    s.st.statsLocked(),
	}
}

// Stats counts the current entries per state and per server.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.statsLocked().clone()
}

// Changed returns a channel closed at the next change of the applied index
// (and on Restore). Watchers select on it, then call EventsSince.
func (s *Store) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// Peers returns the node ID -> gRPC address map recorded by OpSetPeer.
func (s *Store) Peers() map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := make(map[string]string, len(s.st.peers))
	for k, v := range s.st.peers {
		m[k] = v
	}
	return m
}

// Snapshot captures a point-in-time snapshot, O(1) in the number of entries:
// it clones the tree and copies the peer list and the history's chunk
// headers (about a hundred at the default size). Write it with WriteTo from
// any goroutine while Apply continues.
func (s *Store) Snapshot() *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	peers := make([]peer, 0, len(s.st.peers))
	for id, addr := range s.st.peers {
		peers = append(peers, peer{id, addr})
	}
	slices.SortFunc(peers, func(a, b peer) int {
		switch {
		case a.id < b.id:
			return -1
		case a.id > b.id:
			return 1
		}
		return 0
	})
	sn := &Snapshot{
		tree:     s.st.tree.Clone(),
		revision: s.st.revision,
		applied:  s.st.applied,
		peers:    peers,
		events:   s.st.hist.view(),
		metas:    len(s.st.in.metas),
		restores: s.restores,
	}
	if s.st.compactionDue() {
		sn.compactOnto = s
	}
	return sn
}

// CompactionDue reports whether the next Snapshot will rebuild the trees
// dense (compact). It stays true after a snapshot whose compaction gave up
// because more changes than the history holds were applied while it ran,
// as happens during a bulk import.
func (s *Store) CompactionDue() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.compactionDue()
}

// compactionDue: the entries inserted or deleted since the trees were last
// built dense reach a compactShare of them.
func (st *state) compactionDue() bool {
	return st.churn > 0 && st.churn*compactShare >= st.tree.Len()
}
