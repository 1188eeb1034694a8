package apitest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
)

// MailboxName returns the i-th of a set of realistic Cyrus internal names:
// plain users, virtual-domain users and subfolders, so that dbname order
// differs from byte order.
func MailboxName(i int) string {
	switch i % 4 {
	case 0:
		return fmt.Sprintf("user.u%05d", i)
	case 1:
		return fmt.Sprintf("example.com!user.u%05d", i)
	case 2:
		return fmt.Sprintf("user.u%05d.Sent", i)
	default:
		return fmt.Sprintf("example.com!user.u%05d.Archive.2025", i)
	}
}

// Location spreads mailboxes over four backends.
func Location(i int) string { return fmt.Sprintf("imap-be%02d!default", i%4) }

// ACL is a Cyrus ACL for the i-th mailbox.
func ACL(i int) string { return fmt.Sprintf("u%05d\tlrswipkxtecdan\tanyone\tp\t", i) }

// LeaderLog returns the fsm's own event log on the leader after from: the
// reference a watcher's stream is compared with.
func (c *Cluster) LeaderLog(t testing.TB, from uint64) []fsm.Event {
	t.Helper()
	evs, err := c.Nodes[c.WaitLeader()].Node().Store().EventsSince(from, 0)
	if err != nil {
		t.Fatalf("apitest: leader event log since %d: %v", from, err)
	}
	return evs
}

// Revision returns the cluster's committed revision: the leader's, after a
// linearizable read barrier.
func (c *Cluster) Revision(t testing.TB) uint64 {
	t.Helper()
	node := c.Nodes[c.WaitLeader()].Node()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := node.LinearizableRead(ctx); err != nil {
		t.Fatalf("apitest: read barrier: %v", err)
	}
	return node.Store().Revision()
}

// SameEvents fails unless got equals want event by event: same revisions,
// no gap, no duplicate, same order, same content.
func SameEvents(t testing.TB, got, want []fsm.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, the fsm log has %d (got %s, want %s)", len(got), len(want), span(got), span(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Revision != w.Revision || g.Type != w.Type || g.Op != w.Op || g.Entry != w.Entry || g.PrevLocation != w.PrevLocation {
			t.Fatalf("event %d differs:\n got  %+v\n want %+v", i, g, w)
		}
	}
}

func span(evs []fsm.Event) string {
	if len(evs) == 0 {
		return "none"
	}
	return fmt.Sprintf("revisions %d..%d", evs[0].Revision, evs[len(evs)-1].Revision)
}
