// Package floor is a yardstick, not a directory: the leanest replication of
// directory writes that keeps raft's durability rule on three nodes. A
// write is answered once two of the three nodes (the leader counting as
// one) have it on disk, synced; a linearizable read costs one round trip
// to a follower. Everything raft adds on top of that — terms, elections,
// log matching, its goroutines and transport — is left out.
//
// `rookery-bench floor` runs it as three processes, with Rookery's own
// MUPDATE front end and state machine, so `make bench-mupdate` can put it
// beside Rookery and the real Cyrus master in one run. What it reaches on
// a machine is the most any three-node replicated directory could reach
// there with the same front end: where Rookery falls short of an aim and
// this floor does too, the machine is the limit (docs/bench-floor.md).
// A follower can serve the front end too (Follower.Replica), forwarding
// to the leader over one more link: the floor of Rookery's follower path.
//
// It never survives a restart, elects nobody and trusts its followers'
// acknowledgements; it must never hold a real directory.
package floor
