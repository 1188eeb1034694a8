// Package directory is the mailbox directory between the front ends
// (MUPDATE in mupdatecompat, gRPC in api, reservation expiry) and the
// replication underneath (raft in cluster, or Local). Front ends translate
// their protocol into calls of Service and its errors back; they hold no
// store and make no decision of their own. Here, once for every front end:
//
//   - writes are checked (readers refused, fsm.Validate) and stamped with
//     the caller's identity, server binding and time, then proposed in
//     bounded entries; who may change which entry by binding is decided by
//     the state machine on the committed entry (fsm authorize), so every
//     node reaches the same verdict however stale its copy;
//   - reads say their consistency: linearizable (a read barrier first) or
//     stale (this node's applied state);
//   - failures are *Error with a Kind that each front end maps to its
//     wording (Cyrus NO texts, gRPC codes), nothing else;
//   - every change stream is a Follower over this node's applied history.
//
// docs/directory-service.md walks a command through it.
package directory
