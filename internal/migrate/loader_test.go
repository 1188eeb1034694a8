package migrate_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rookery/rookery/api/apitest"
	"github.com/rookery/rookery/client"
	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/internal/migrate"
)

// TestLoaderWaitsOutALostQuorum starts a load while two of three nodes are
// down: every Batch answers UNAVAILABLE until a node comes back, then the
// load finishes with every entry written once.
func TestLoaderWaitsOutALostQuorum(t *testing.T) {
	c := apitest.Start(t, apitest.Options{Cluster: func(_ int, cfg *cluster.Config) { cfg.WriteTimeout = 500 * time.Millisecond }})
	c.WaitLeader()
	c.Stop(1)
	c.Stop(2)
	ccfg := client.DefaultConfig()
	ccfg.Logger = apitest.Logger(t)
	cl, err := client.Dial([]string{c.Nodes[0].APIAddr}, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	done := make(chan error, 1)
	var l *migrate.Loader
	go func() {
		l = migrate.NewLoader(ctx, cl, migrate.LoaderConfig{BatchSize: 500})
		for i := 0; i < 3000; i++ {
			if err := l.Add(migrate.Entry{Name: fmt.Sprintf("user.u%04d", i), Location: "be1!default", ACL: "a\tlr\t"}); err != nil {
				done <- err
				return
			}
		}
		st, err := l.Close()
		if err == nil && (st.Written != 3000 || st.Failed != 0) {
			err = fmt.Errorf("stats %+v", st)
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the load ended without a quorum: %v", err)
	case <-time.After(2 * time.Second):
	}
	c.Restart(1)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := c.Nodes[0].Node().Store().Len(); n != 3000 {
		t.Fatalf("%d mailboxes after the load", n)
	}
}
