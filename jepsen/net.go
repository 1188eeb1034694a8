package jepsen

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Mode is what a directed link between two nodes does with the bytes sent
// over it.
type Mode uint8

const (
	// Pass forwards bytes.
	Pass Mode = iota
	// Blackhole holds bytes without reading further, so the sender's TCP
	// buffers fill and its RPCs time out, as across a real outage; when the
	// link heals the held bytes flow on, as TCP retransmission would deliver
	// them. This is what a partition does by default.
	Blackhole
	// Drop reads and discards bytes: the connection stays up but the stream
	// loses data, as behind a faulty middlebox. Receivers see garbage.
	Drop
	// Sever resets existing connections and refuses new ones, as a host
	// answering with RST does.
	Sever
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Blackhole:
		return "blackhole"
	case Drop:
		return "drop"
	case Sever:
		return "sever"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// Link is a direction between two nodes: bytes sent by From to To.
type Link struct{ From, To string }

// Net is the fault table every proxy consults: the mode of each directed
// link. Links not in the table pass. It is safe for concurrent use.
type Net struct {
	mu      sync.Mutex
	links   map[Link]Mode
	changed chan struct{}
}

// NewNet returns a table in which every link passes.
func NewNet() *Net {
	return &Net{links: map[Link]Mode{}, changed: make(chan struct{})}
}

// Mode returns the link's mode and a channel closed at the next change of
// the table, so a proxy holding bytes can wait for the link to heal.
func (n *Net) Mode(from, to string) (Mode, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.links[Link{from, to}], n.changed
}

// Set sets one directed link.
func (n *Net) Set(from, to string, m Mode) {
	n.update(func(links map[Link]Mode) { setLink(links, Link{from, to}, m) })
}

// Partition cuts every link between nodes of different groups, in both
// directions, with mode m; links inside a group, and links of nodes in no
// group, are left as they are.
func (n *Net) Partition(groups [][]string, m Mode) {
	n.update(func(links map[Link]Mode) {
		for gi, g := range groups {
			for gj, h := range groups {
				if gi == gj {
					continue
				}
				for _, a := range g {
					for _, b := range h {
						setLink(links, Link{a, b}, m)
					}
				}
			}
		}
	})
}

// Heal makes every link pass again.
func (n *Net) Heal() {
	n.update(func(links map[Link]Mode) { clear(links) })
}

// Faulty returns the links that do not pass.
func (n *Net) Faulty() map[Link]Mode {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[Link]Mode, len(n.links))
	for l, m := range n.links {
		out[l] = m
	}
	return out
}

// String describes the faulty links, e.g. "n1->n2 blackhole, n2->n1 blackhole".
func (n *Net) String() string {
	f := n.Faulty()
	if len(f) == 0 {
		return "all links pass"
	}
	parts := make([]string, 0, len(f))
	for l, m := range f {
		parts = append(parts, fmt.Sprintf("%s->%s %s", l.From, l.To, m))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func (n *Net) update(f func(map[Link]Mode)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f(n.links)
	close(n.changed)
	n.changed = make(chan struct{})
}

func setLink(links map[Link]Mode, l Link, m Mode) {
	if m == Pass {
		delete(links, l)
		return
	}
	links[l] = m
}
