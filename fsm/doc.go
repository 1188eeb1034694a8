// Package fsm is the replicated directory state machine: the MUPDATE
// mailbox list (name → state, location, ACL) that every Raft node applies
// from the log.
//
// Store holds the live state in a copy-on-write B-tree keyed by the Cyrus
// 3.6 dbname key (DBNameKey), so in-order iteration is mailboxes.db order and
// a name prefix is a key range. View and Snapshot are O(1) clones that stay
// consistent while Apply continues. Every successful mailbox command is one
// Event with the next dense revision; a bounded history lets watchers resume
// with EventsSince, and a watcher that fell behind gets ErrCompacted and
// re-reads a View (etcd's model).
//
// Apply is deterministic: it reads nothing but the commands and the state,
// so every node that applies the same log holds the same state and writes
// the same snapshot bytes.
package fsm
