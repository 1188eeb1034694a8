package fsm

// authorize applies the server binding of the issuing identity (Command.Bound,
// stamped by the proposing node from mupdate.backend_servers) against the
// committed entry, so that every node and every front end reaches the same
// decision however stale its local copy is. An unbound command (Bound "")
// is always allowed here; readers never get as far as proposing.
//
// The rule: an identity bound to server S may create, change or remove only
// entries whose location is, and stays, on S. Concretely:
//
//   - RESERVE, ACTIVATE, DEACTIVATE: the new location must be on S.
//   - ACTIVATE, DEACTIVATE, DELETE: an existing entry must be on S, with one
//     exception below. RESERVE of a name held elsewhere is left to decide,
//     which refuses it as "mailbox already exists" and changes nothing.
//   - The XFER exception: ACTIVATE at a location on S of an entry that is
//     RESERVED on another server. A Cyrus XFER has the source backend
//     DEACTIVATE the mailbox to RESERVED at the source location, and then
//     the destination backend's MUPDATEPUSH ACTIVATEs it at the destination
//     under the destination's own identity (docs/authorization.md has the
//     transcript). An ACTIVE entry on another server is never taken over.
func authorize(c *Command, old *record) Code {
	if c.Bound == "" || c.Op == OpSetPeer {
		return CodeOK
	}
	if c.Op != OpDelete && ServerOf(c.Location) != c.Bound {
		return CodePermissionDenied
	}
	if old == nil || c.Op == OpReserve || ServerOf(old.meta.loc) == c.Bound {
		return CodeOK
	}
	if c.Op == OpActivate && old.meta.state == StateReserved {
		return CodeOK // the destination's half of an XFER
	}
	return CodePermissionDenied
}
