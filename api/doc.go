// Package api serves a Rookery node's public gRPC API: the Directory and
// Cluster services of rookery.v1, grpc.health.v1 and server reflection,
// behind TLS and an authentication/authorization interceptor that also
// guards the node-to-node Peer service registered on the same listener.
//
// # Reads, writes and the change feed
//
// Get and List are linearizable by default (cluster LinearizableRead, then
// the local store) and stale on request. Every page of one List is read
// from one point-in-time view, cached on the node that served the first
// page; a page token names the revision, the filter and the last name.
// Writes go through Node.Apply from any node; fsm outcomes map to
// ALREADY_EXISTS, NOT_FOUND, FAILED_PRECONDITION and INVALID_ARGUMENT, loss
// of leader or quorum to UNAVAILABLE. Watch is served by every node from
// its own applied state, so followers carry watchers too.
//
// # Security
//
// Authentication is on as soon as an Authenticator (users file), a token or
// a client CA is configured. A caller is identified by, in this order: the
// cluster peer secret (metadata PeerTokenMetadata); an "authorization"
// header ("Bearer <token>", "Bearer user:password", "Basic ..."); a client
// certificate verified against the client CA (subject CN, else the first
// SAN). Roles come from the Authenticator's writer and reader lists, the
// same ones MUPDATE uses, for every kind of identity:
//
//   - health: open;
//   - reads (Get, List, Watch, WaitRevision, Status, Members, reflection):
//     open with OpenReads, else any identity with a role;
//   - writes: writers; a writer bound to a Cyrus server only for locations
//     on that server;
//   - cluster operations (membership, leadership, Snapshot): unbound writers;
//   - Peer (node-to-node): only other nodes, proven by the shared secret or
//     by a client certificate that verifies against PeerCAFile. Peer.Apply
//     carries the writer identity inside the commands, so an open Peer
//     service would let anyone write as anyone: NewServer refuses to run
//     with authentication on and no peer credential, unless InsecurePeers.
//
// The identity that wrote a reservation is taken from the interceptor,
// never from the request.
package api
