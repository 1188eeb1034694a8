package api_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rookery/rookery/api/apitest"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// BenchmarkWatchPropagation measures how long a change takes to reach a
// watcher on a follower once the write is acknowledged on the leader: the
// delay a gateway replica adds to routing after a backend's write. Writes
// are sequential, each one waiting for its event, so every sample is one
// isolated propagation.
func BenchmarkWatchPropagation(b *testing.B) {
	c := apitest.Start(b, apitest.Options{})
	leader, follower := c.WaitLeader(), c.Follower()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := dirClient(b, c.Nodes[leader].APIAddr)
	st, err := dirClient(b, c.Nodes[follower].APIAddr).Watch(ctx, &rookeryv1.WatchRequest{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		b.Fatal(err)
	}
	type arrival struct {
		rev uint64
		at  time.Time
	}
	arrivals := make(chan arrival, 1024)
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				close(arrivals)
				return
			}
			at := time.Now()
			for _, ev := range resp.GetEvents() {
				arrivals <- arrival{ev.GetRevision(), at}
			}
		}
	}()
	afterAck := make([]time.Duration, 0, b.N)
	endToEnd := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	failed := 0
	for i := 0; len(afterAck) < b.N; i++ {
		start := time.Now()
		resp, err := w.Activate(ctx, &rookeryv1.ActivateRequest{Name: mailboxName(i), Location: location(i), Acl: acl(i)})
		if err != nil {
			// A loaded machine can lose its leader mid-run: measure on.
			if failed++; failed > 10 {
				b.Fatalf("%d writes failed, last: %v", failed, err)
			}
			b.Logf("write failed (%v); writing to the new leader", err)
			w = dirClient(b, c.Nodes[c.WaitLeader()].APIAddr)
			continue
		}
		ack := time.Now()
		for a := range arrivals {
			if a.rev == resp.GetRevision() {
				afterAck = append(afterAck, max(a.at.Sub(ack), 0))
				endToEnd = append(endToEnd, a.at.Sub(start))
				break
			}
		}
	}
	b.StopTimer()
	if len(afterAck) != b.N {
		b.Fatalf("watch ended after %d of %d events", len(afterAck), b.N)
	}
	p50, p99, pmax := percentiles(afterAck)
	e50, e99, _ := percentiles(endToEnd)
	b.ReportMetric(ms(p50), "ack→watch-p50-ms")
	b.ReportMetric(ms(p99), "ack→watch-p99-ms")
	b.ReportMetric(ms(e99), "write→watch-p99-ms")
	b.Logf("n=%d (failed writes skipped: %d)  leader ack → follower watcher: p50 %v  p99 %v  max %v;  write start → watcher: p50 %v  p99 %v", b.N, failed, p50, p99, pmax, e50, e99)
}

// BenchmarkGet compares linearizable reads (a read-index round with the
// leader per batch of readers) with stale reads (local only), from 8
// concurrent callers over real gRPC.
func BenchmarkGet(b *testing.B) {
	c := apitest.Start(b, apitest.Options{})
	cl := newClient(b, c.Endpoints())
	activateN(b, cl, 0, 64)
	leader, follower := c.WaitLeader(), c.Follower()
	cases := []struct {
		name string
		node int
		c    rookeryv1.Consistency
	}{
		{"linearizable/follower", follower, rookeryv1.Consistency_CONSISTENCY_LINEARIZABLE},
		{"linearizable/leader", leader, rookeryv1.Consistency_CONSISTENCY_LINEARIZABLE},
		{"stale/follower", follower, rookeryv1.Consistency_CONSISTENCY_STALE},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			d := dirClient(b, c.Nodes[tc.node].APIAddr)
			if _, err := d.WaitRevision(context.Background(), &rookeryv1.WaitRevisionRequest{Revision: 64}); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.SetParallelism(4) // 8 callers on this 2-core machine
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(next.Add(1)) % 64
					if _, err := d.Get(context.Background(), &rookeryv1.GetRequest{Name: mailboxName(i), Consistency: tc.c}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "gets/s")
		})
	}
}

func percentiles(ds []time.Duration) (p50, p99, pmax time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.99), s[len(s)-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
