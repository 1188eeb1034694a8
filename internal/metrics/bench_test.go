package metrics

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rookery/rookery/fsm"
)

// BenchmarkScrapeDirectory times one scrape of the node collector over a
// directory of 1M mailboxes across 20 servers: with no reservation (the
// usual case), the first scrape that finds reservations, and later
// scrapes; the oldest reservation comes from fsm's reservation index.
func BenchmarkScrapeDirectory(b *testing.B) {
	const n = 1_000_000
	store := fsm.New(fsm.DefaultConfig())
	var idx uint64
	for i := 0; i < n; i += 10_000 {
		cmds := make([]fsm.Command, 0, 10_000)
		for j := i; j < i+10_000; j++ {
			cmds = append(cmds, fsm.Command{Op: fsm.OpActivate, Name: fmt.Sprintf("user.u%07d", j),
				Location: fmt.Sprintf("be%02d!default", j%20), ACL: "u\tlrswipkxtecda\t", Time: time.Now().UnixNano()})
		}
		idx++
		store.Apply(idx, cmds)
	}
	scrape := func(b *testing.B, c *NodeCollector) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(c)
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("no reservation", func(b *testing.B) {
		c := NewNodeCollector(storeNode{store: store})
		for b.Loop() {
			scrape(b, c)
		}
	})
	i := 0
	reserve := func() {
		idx++
		i++
		store.Apply(idx, []fsm.Command{{Op: fsm.OpReserve, Name: fmt.Sprintf("user.r%07d", i), Location: "be01!default", Time: time.Now().UnixNano()}})
	}
	b.Run("first scrape with a reservation", func(b *testing.B) {
		reserve()
		for b.Loop() {
			scrape(b, NewNodeCollector(storeNode{store: store}))
		}
	})
	b.Run("a new reservation per scrape", func(b *testing.B) {
		c := NewNodeCollector(storeNode{store: store})
		scrape(b, c) // the base scan, measured above
		for b.Loop() {
			b.StopTimer()
			reserve()
			b.StartTimer()
			scrape(b, c)
		}
	})
}
