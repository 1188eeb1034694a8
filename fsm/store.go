package fsm

// PLACEHOLDER: the fsm helper replaces this file with the real
// implementation. The exported API below is the contract other packages
// (cluster, mupdatecompat, api) code against; keep it.

import (
	"errors"
	"fmt"
	"io"
)

// Config tunes a Store.
type Config struct {
	// HistorySize is how many recent events are kept for watchers resuming
	// from a revision. Older revisions answer ErrCompacted.
	HistorySize int
}

// DefaultConfig returns the defaults: 100k events of history.
func DefaultConfig() Config { return Config{HistorySize: 100_000} }

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

// Store is the directory state machine. Apply is called by one goroutine
// (raft's FSM loop); every other method is safe for concurrent use.
type Store struct{}

// New returns an empty store.
func New(cfg Config) *Store { panic("unimplemented") }

// Apply applies the commands of one raft log entry at the given log index,
// in order, and returns one result each.
func (s *Store) Apply(index uint64, cmds []Command) []Result { panic("unimplemented") }

// Revision is the revision of the last change applied.
func (s *Store) Revision() uint64 { panic("unimplemented") }

// AppliedIndex is the raft log index of the last entry applied.
func (s *Store) AppliedIndex() uint64 { panic("unimplemented") }

// Get returns the current entry for name.
func (s *Store) Get(name string) (Entry, bool) { panic("unimplemented") }

// View returns a consistent point-in-time view, O(1); writes continue.
func (s *Store) View() *View { panic("unimplemented") }

// EventsSince returns up to max events with revision > from, in order. A
// from older than the history returns a *CompactedError (ErrCompacted).
func (s *Store) EventsSince(from uint64, max int) ([]Event, error) { panic("unimplemented") }

// Changed returns a channel closed at the next change of the applied index.
func (s *Store) Changed() <-chan struct{} { panic("unimplemented") }

// Peers returns the node ID -> gRPC address map recorded by OpSetPeer.
func (s *Store) Peers() map[string]string { panic("unimplemented") }

// Snapshot captures a point-in-time snapshot, O(1).
func (s *Store) Snapshot() *Snapshot { panic("unimplemented") }

// Restore replaces the whole state from a snapshot stream.
func (s *Store) Restore(r io.Reader) error { panic("unimplemented") }

// View is a consistent, immutable view of the directory at one revision.
type View struct{}

func (v *View) Revision() uint64                            { panic("unimplemented") }
func (v *View) Get(name string) (Entry, bool)               { panic("unimplemented") }
func (v *View) Len() int                                    { panic("unimplemented") }
func (v *View) ScanName(prefix string, fn func(Entry) bool) { panic("unimplemented") }
func (v *View) ScanNameFrom(prefix, after string, fn func(Entry) bool) {
	panic("unimplemented")
}
func (v *View) ScanLocation(prefix string, fn func(Entry) bool) { panic("unimplemented") }
func (v *View) Stats() Stats                                    { panic("unimplemented") }

// Stats counts mailboxes per state and per server.
type Stats struct {
	Active, Reserved uint64
	Servers          []ServerStats // sorted by server
}

// ServerStats counts the mailboxes of one server.
type ServerStats struct {
	Server           string
	Active, Reserved uint64
}

// Snapshot is a point-in-time copy of the store.
type Snapshot struct{}

func (sn *Snapshot) Revision() uint64                   { panic("unimplemented") }
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) { panic("unimplemented") }

// EncodeCommands encodes the commands of one log entry.
func EncodeCommands(cmds []Command) []byte { panic("unimplemented") }

// DecodeCommands decodes what EncodeCommands wrote.
func DecodeCommands(b []byte) ([]Command, error) { panic("unimplemented") }

// EncodeResults / DecodeResults carry results across the Peer.Apply RPC.
func EncodeResults(rs []Result) []byte         { panic("unimplemented") }
func DecodeResults(b []byte) ([]Result, error) { panic("unimplemented") }

// Validate checks a command before it is proposed: non-empty name of at most
// MaxNameLen bytes without NUL, CR, LF, 0x1D or 0x1F; location/ACL limits.
func Validate(c Command) error { panic("unimplemented") }
