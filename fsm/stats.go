package fsm

import (
	"slices"
	"strings"
)

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

func (s *Stats) clone() Stats {
	c := *s
	c.Servers = slices.Clone(s.Servers)
	return c
}

// serverCounts is maintained by Apply so Stats never scans the tree.
type serverCounts map[string]*[2]uint64 // server -> {active, reserved}

func (sc serverCounts) add(m *meta) {
	srv := ServerOf(m.loc)
	c := sc[srv]
	if c == nil {
		c = new([2]uint64)
		sc[srv] = c
	}
	c[stateSlot(m)]++
}

func (sc serverCounts) remove(m *meta) {
	srv := ServerOf(m.loc)
	c := sc[srv]
	if c == nil {
		return
	}
	c[stateSlot(m)]--
	if c[0] == 0 && c[1] == 0 {
		delete(sc, srv)
	}
}

func stateSlot(m *meta) int {
	if m.state == StateReserved {
		return 1
	}
	return 0
}

// statsLocked returns the cached, immutable Stats of the state, building it
// when a change dropped the cache. Callers hold the store lock exclusively.
func (st *state) statsLocked() *Stats {
	if st.statsCache != nil {
		return st.statsCache
	}
	s := &Stats{Servers: make([]ServerStats, 0, len(st.stats))}
	for srv, c := range st.stats {
		s.Servers = append(s.Servers, ServerStats{Server: srv, Active: c[0], Reserved: c[1]})
		s.Active += c[0]
		s.Reserved += c[1]
	}
	slices.SortFunc(s.Servers, func(a, b ServerStats) int { return strings.Compare(a.Server, b.Server) })
	st.statsCache = s
	return s
}
