// Package jepsen tests Rookery the way Jepsen tests databases: it starts
// real rookeryd processes (3 or 5, each with its own data directory) on
// 127.0.0.1, drives concurrent MUPDATE sessions and gRPC clients at a few
// contended mailbox names, injects faults, records every operation as
// invoke → ok / fail / unknown on a monotonic clock, and checks the
// history.
//
// Faults are real: every node's raft port and its peer gRPC port (the one
// followers forward writes and read-index requests to) sit behind a TCP
// Proxy of this package, and the peer list given to the nodes names the
// proxies. A proxy attributes each accepted connection to the node process
// that opened it (through /proc, see Owners), so the fault table (Net) can
// hold, drop or reset the bytes of each directed link: partitions are TCP
// behaviour between separate processes, not a mocked transport. Clients
// reach the nodes' real ports directly, as Cyrus backends on the same
// segment would. The nemeses are kill -9 and restart, SIGSTOP/SIGCONT,
// partitions (majority/minority, leader isolated, bridge, one-way),
// repeated leadership transfers, and removing a node (wiping it) and
// adding it back empty under load.
//
// The checkers:
//   - porcupine with a per-mailbox model of the Cyrus standard-mode
//     semantics (DirectoryModel); a write of unknown outcome may take
//     effect at any point after its invocation, or never;
//   - acknowledged writes are in the committed log (gRPC writes at the
//     revision they were acknowledged with; MUPDATE writes each matched to a
//     change of their own), and every node holds the log's final state;
//   - revisions follow real time, so no read is served older than a
//     revision acknowledged before it began;
//   - exclusive reservation: two RESERVEs of one name at different
//     locations cannot both succeed unless a DELETE, or an ACTIVATE or
//     DEACTIVATE naming the second location, can fall between them (a
//     RESERVE at the entry's own location legitimately succeeds: Cyrus
//     resets the entry);
//   - the committed log replays under the command semantics;
//   - gRPC Watch streams deliver dense revisions without gap or repeat
//     across reconnects and nodes, agree with each other, and reach the
//     final revision; MUPDATE UPDATE streams deliver a dump that is the
//     directory at some revision followed by exactly the log's changes,
//     every NOOP's OK comes only once the stream holds every write
//     acknowledged before the NOOP was sent, and a NOOP after healing
//     finds the stream at the final revision.
//
// A run writes a folder: history.jsonl (operations and faults),
// streams.json, final.json, report.json, summary.txt, each node's log, and
// linearizability.html (porcupine's timeline, faults drawn in) when the
// history is not linearizable. TestUnsafeStaleReadsAreCaught proves the
// checker can fail: gRPC reads made with consistency STALE and recorded as
// linearizable are caught.
package jepsen
