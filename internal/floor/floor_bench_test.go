package floor

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rookery/rookery/fsm"
)

// BenchmarkApply is the floor without the MUPDATE front end: writers
// calling Apply on a leader whose followers run in this process, over
// loopback TCP, each with a log file of its own on this disk.
func BenchmarkApply(b *testing.B) {
	for _, writers := range []int{1, 16} {
		for _, c := range []struct {
			inFlight  int
			syncFirst bool
		}{{1, false}, {2, false}, {4, false}, {2, true}} {
			b.Run(fmt.Sprintf("writers=%d/inFlight=%d/syncFirst=%v", writers, c.inFlight, c.syncFirst), func(b *testing.B) {
				token := make([]byte, TokenSize)
				_, a1 := startFollower(b, token)
				_, a2 := startFollower(b, token)
				cfg := DefaultConfig()
				cfg.Followers, cfg.Token, cfg.InFlight, cfg.SyncFirst = []string{a1, a2}, token, c.inFlight, c.syncFirst
				l := startLeader(b, cfg)
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							if _, err := l.Apply(context.Background(), []fsm.Command{activate(fmt.Sprintf("user.b%d", i))}); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/float64(l.Store().AppliedIndex()), "writes/batch")
			})
		}
	}
}
