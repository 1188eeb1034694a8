package gateway

import (
	"strings"
	"sync"
	"time"

	"github.com/rookery/rookery/fsm"
)

// Router answers the one question the gateway asks on every login and
// every LMTP recipient: where does this mailbox live? Implementations must
// answer from memory; a network round trip here would put the directory
// back on the mail path, which is what the gateway exists to avoid.
type Router interface {
	// Lookup returns the entry for a Cyrus internal name such as
	// "user.alice" or "example.com!user.bob".
	Lookup(name string) (fsm.Entry, bool)
	// Ready reports whether the replica has caught up with the directory.
	// Until it has, a missing name may merely be not yet known, so callers
	// must answer with temporary errors instead of "no such user".
	Ready() bool
}

// ReplicaConfig tunes a Replica.
type ReplicaConfig struct {
	// Keep selects the names the replica stores. The gateway routes by
	// INBOX and by shared folder, so the default (RoutableName) drops user
	// sub-folders and DELETED.* entries, which are most of a large
	// directory. Revisions still advance for every event.
	Keep func(name string) bool
	// Now is the clock used for lag reporting (time.Now when nil).
	Now func() time.Time
}

// DefaultReplicaConfig keeps routable names only.
func DefaultReplicaConfig() ReplicaConfig {
	return ReplicaConfig{Keep: RoutableName, Now: time.Now}
}

// RoutableName reports whether the gateway can ever route by this name:
// user INBOXes ("user.alice", "dom!user.bob") and shared folders, but not
// user sub-folders ("user.alice.Sent") or delayed-delete names.
func RoutableName(name string) bool {
	if _, rest, ok := strings.Cut(name, "!"); ok {
		name = rest
	}
	if strings.HasPrefix(name, "DELETED.") {
		return false
	}
	if user, ok := strings.CutPrefix(name, "user."); ok {
		return !strings.Contains(user, ".")
	}
	return true
}

// ListableName reports whether a murder-mode IMAP session can ever show
// this name: everything but delayed-delete names.
func ListableName(name string) bool {
	if _, rest, ok := strings.Cut(name, "!"); ok {
		name = rest
	}
	return !strings.HasPrefix(name, "DELETED.")
}

// ReplicaConfig returns the replica settings this gateway needs: every
// listable name with its ACL in murder mode, INBOXes and shared folders
// only in relay mode.
func (c *Config) ReplicaConfig() ReplicaConfig {
	rc := DefaultReplicaConfig()
	if c.IMAP.Mode == IMAPModeMurder {
		rc.Keep = ListableName
	}
	return rc
}

// ReplicaStats is a point-in-time summary of a Replica, for metrics.
type ReplicaStats struct {
	Revision     uint64 // last revision applied
	HeadRevision uint64 // newest revision the feed has reported
	LagRevisions uint64 // HeadRevision - Revision
	Entries      int
	Ready        bool
	LastApply    time.Time     // when an event or reset was last applied
	LastContact  time.Time     // when the feed last reported anything
	SinceContact time.Duration // how long ago that was (0 if never)
}

// Replica is the gateway's in-memory copy of the directory. A feed (the
// gRPC Watch client) calls Reset with a snapshot, then Apply with the
// events that follow; the gateway's sessions call Lookup concurrently.
// It stores a compact record per name with the location interned, because
// a directory holds millions of names but only a handful of locations.
type Replica struct {
	keep func(string) bool
	now  func() time.Time

	mu          sync.RWMutex
	entries     map[string]replicaEntry
	locations   map[string]string
	rev, head   uint64
	ready       bool
	lastApply   time.Time
	lastContact time.Time
}

type replicaEntry struct {
	location       string // interned
	acl            string
	state          fsm.State
	createRevision uint64
	modRevision    uint64
}

// NewReplica returns an empty replica that is not ready.
func NewReplica(cfg ReplicaConfig) *Replica {
	if cfg.Keep == nil {
		cfg.Keep = RoutableName
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Replica{
		keep:      cfg.Keep,
		now:       cfg.Now,
		entries:   make(map[string]replicaEntry),
		locations: make(map[string]string),
	}
}

// Lookup implements Router.
func (r *Replica) Lookup(name string) (fsm.Entry, bool) {
	r.mu.RLock()
	e, ok := r.entries[name]
	r.mu.RUnlock()
	if !ok {
		return fsm.Entry{}, false
	}
	return e.entry(name), true
}

// Range calls fn for every entry, in no particular order, until fn
// returns false. It holds the read lock throughout: fn must not block.
func (r *Replica) Range(fn func(fsm.Entry) bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for name, e := range r.entries {
		if !fn(e.entry(name)) {
			return
		}
	}
}

func (e replicaEntry) entry(name string) fsm.Entry {
	return fsm.Entry{
		Name:           name,
		State:          e.state,
		Location:       e.location,
		ACL:            e.acl,
		CreateRevision: e.createRevision,
		ModRevision:    e.modRevision,
	}
}

// Ready implements Router.
func (r *Replica) Ready() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.ready
}

// SetReady is called by the feed once it has caught up (true) and when it
// loses the directory (false), so LMTP stops bouncing unknown recipients.
func (r *Replica) SetReady(ready bool) {
	r.mu.Lock()
	r.ready = ready
	r.mu.Unlock()
}

// Revision returns the last revision applied.
func (r *Replica) Revision() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.rev
}

// Reset replaces the whole content with a snapshot taken at rev, as after
// a first connect or a "compacted" answer from the directory.
func (r *Replica) Reset(entries []fsm.Entry, rev uint64) {
	m := make(map[string]replicaEntry, len(entries))
	locs := make(map[string]string)
	for _, e := range entries {
		if r.keep(e.Name) {
			m[e.Name] = makeEntry(locs, e)
		}
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries, r.locations, r.rev = m, locs, rev
	r.head = max(r.head, rev)
	r.lastApply, r.lastContact = now, now
}

// Apply applies events in order. Events at or below the current revision
// are skipped, so a feed that resumes from a slightly older revision after
// a reconnect can replay without harm.
func (r *Replica) Apply(events []fsm.Event) {
	if len(events) == 0 {
		return
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range events {
		if ev.Revision <= r.rev {
			continue
		}
		r.rev = ev.Revision
		if !r.keep(ev.Entry.Name) {
			continue
		}
		switch ev.Type {
		case fsm.EventPut:
			r.entries[ev.Entry.Name] = makeEntry(r.locations, ev.Entry)
		case fsm.EventDelete:
			delete(r.entries, ev.Entry.Name)
		}
	}
	r.head = max(r.head, r.rev)
	r.lastApply, r.lastContact = now, now
}

// Progress records a feed's promise that every change up to rev has been
// delivered (a Watch progress notice, or a filtered stream skipping
// changes), so the replica is at rev even without events.
func (r *Replica) Progress(rev uint64) {
	now := r.now()
	r.mu.Lock()
	r.rev = max(r.rev, rev)
	r.head = max(r.head, rev)
	r.lastContact = now
	r.mu.Unlock()
}

// ObserveHead records the newest revision the directory has reported (a
// Watch progress notification or response header), so lag is measurable
// even while no events arrive.
func (r *Replica) ObserveHead(rev uint64) {
	now := r.now()
	r.mu.Lock()
	r.head = max(r.head, rev)
	r.lastContact = now
	r.mu.Unlock()
}

// Stats returns the replica's size, revision and lag.
func (r *Replica) Stats() ReplicaStats {
	now := r.now()
	r.mu.RLock()
	defer r.mu.RUnlock()
	s := ReplicaStats{
		Revision:     r.rev,
		HeadRevision: r.head,
		Entries:      len(r.entries),
		Ready:        r.ready,
		LastApply:    r.lastApply,
		LastContact:  r.lastContact,
	}
	if r.head > r.rev {
		s.LagRevisions = r.head - r.rev
	}
	if !r.lastContact.IsZero() {
		s.SinceContact = now.Sub(r.lastContact)
	}
	return s
}

func makeEntry(locs map[string]string, e fsm.Entry) replicaEntry {
	loc, ok := locs[e.Location]
	if !ok {
		loc = strings.Clone(e.Location)
		locs[loc] = loc
	}
	return replicaEntry{location: loc, acl: e.ACL, state: e.State, createRevision: e.CreateRevision, modRevision: e.ModRevision}
}
