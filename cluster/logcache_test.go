package cluster

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

// countingLogs counts the reads that reach the store behind the cache.
type countingLogs struct {
	raft.LogStore
	reads int
}

func (c *countingLogs) GetLog(index uint64, l *raft.Log) error {
	c.reads++
	return c.LogStore.GetLog(index, l)
}

// TestLogCacheKeepsOrdinaryEntriesButNotBulkOnes: entries of ordinary
// writes are read back from memory; an append holding an entry over
// logCacheMaxData (a bulk import's) is not kept there, and reading it
// back still returns what was stored.
func TestLogCacheKeepsOrdinaryEntriesButNotBulkOnes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size      int
		fromStore bool
	}{
		{name: "group-commit entry", size: 4 << 10, fromStore: false},
		{name: "at the limit", size: logCacheMaxData, fromStore: false},
		{name: "bulk import entry", size: logCacheMaxData + 1, fromStore: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &countingLogs{LogStore: raft.NewInmemStore()}
			c, err := newLogCache(store)
			if err != nil {
				t.Fatal(err)
			}
			data := bytes.Repeat([]byte{7}, tc.size)
			if err := c.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Data: data}}); err != nil {
				t.Fatal(err)
			}
			var got raft.Log
			if err := c.GetLog(1, &got); err != nil || !bytes.Equal(got.Data, data) {
				t.Fatalf("read back: %v, %d bytes", err, len(got.Data))
			}
			if (store.reads > 0) != tc.fromStore {
				t.Fatalf("store reads %d, want from store: %v", store.reads, tc.fromStore)
			}
		})
	}
}
