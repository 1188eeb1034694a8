package jepsen

import "math/rand/v2"

// Workload is the mix of operations clients issue. Few names and few
// locations force contention: concurrent RESERVEs of one name at different
// locations, moves racing deletes, reads racing all of them.
type Workload struct {
	Names     []string
	Locations []string
	ACLs      []string
	// Relative weights of each kind.
	Reserve, Activate, Deactivate, Delete, Get int
}

// DefaultWorkload uses five names (one with a virtual domain, one a
// sub-mailbox), three locations and two ACLs.
func DefaultWorkload() Workload {
	return Workload{
		Names: []string{
			"user.jepsen0", "user.jepsen1", "user.jepsen1.Sent",
			"example.com!user.jepsen2", "user.jepsen3",
		},
		Locations: []string{"be1!default", "be2!default", "be3!p2"},
		ACLs: []string{
			"jepsen\tlrswipkxtecdan\t",
			"anyone\tlrs\tjepsen\tlrswipkxtecdan\t",
		},
		Reserve: 25, Activate: 20, Deactivate: 10, Delete: 15, Get: 30,
	}
}

// next draws one operation.
func (w Workload) next(rng *rand.Rand) modelInput {
	in := modelInput{Name: w.Names[rng.IntN(len(w.Names))]}
	total := w.Reserve + w.Activate + w.Deactivate + w.Delete + w.Get
	x := rng.IntN(max(total, 1))
	switch {
	case x < w.Reserve:
		in.Kind = KindReserve
	case x < w.Reserve+w.Activate:
		in.Kind = KindActivate
	case x < w.Reserve+w.Activate+w.Deactivate:
		in.Kind = KindDeactivate
	case x < w.Reserve+w.Activate+w.Deactivate+w.Delete:
		in.Kind = KindDelete
	default:
		in.Kind = KindGet
	}
	switch in.Kind {
	case KindReserve, KindDeactivate:
		in.Loc = w.Locations[rng.IntN(len(w.Locations))]
	case KindActivate:
		in.Loc = w.Locations[rng.IntN(len(w.Locations))]
		in.ACL = w.ACLs[rng.IntN(len(w.ACLs))]
	}
	return in
}
