// Package cluster replicates the directory store with Raft.
//
// A Node wraps a hashicorp/raft instance whose FSM is an fsm.Store, with
// raft-boltdb as log and stable store, file snapshots, and a TCP (optionally
// mutual-TLS) transport. Members talk to each other for everything else over
// the rookery.v1.Peer gRPC service, which rookeryd serves next to its public
// API (RegisterPeerService).
//
// Writes. Node.Apply works on every node. The leader packs concurrent
// callers' commands into one log entry (on top of raft's own group commit),
// stamps them with its clock and proposes them; a follower forwards the
// commands to the leader with Peer.Apply and relays the results, then waits
// until it has applied the entry itself, so a client that reads from the
// node it wrote through sees its write. Forwarding is retried only when the
// request certainly never reached a leader; any failure that leaves the
// outcome unknown surfaces as ErrUnavailable, never as a duplicate.
//
// Reads. Store() is local and may be stale. Node.LinearizableRead makes the
// next local read linearizable: the leader confirms its leadership with a
// heartbeat round (VerifyLeader) and uses the commit index recorded before
// it as the read index; a follower asks the leader for that index
// (Peer.ReadIndex). Either waits until the index is applied locally.
// Concurrent readers share rounds. A new leader serves no read index until
// it has applied an entry of its own term (it commits its gRPC address to
// the replicated peer map for that purpose), so entries committed by its
// predecessors are visible. Node.LinearizableGet reads one name: a
// follower that has not yet applied the read index has the leader answer
// (Peer.Lookup) instead of waiting to learn the new commit index. With
// Config.ReadMode ReadLease the leader skips the heartbeat round while a
// lease from its followers' acknowledgements holds (lease.go).
//
// Availability. Every call that needs a leader or quorum gives up after
// Config.WriteTimeout (or the caller's deadline) with an error wrapping
// ErrUnavailable, which protocol layers turn into MUPDATE "NO" or gRPC
// UNAVAILABLE.
package cluster
