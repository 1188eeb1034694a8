package cluster

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

func TestEntryOriginsRoundTrip(t *testing.T) {
	cmds := func(n int) []fsm.Command { return make([]fsm.Command, n) }
	batch := []*proposal{
		{cmds: cmds(2)},
		{cmds: cmds(3), origin: []byte("first-tag")},
		{cmds: cmds(1)},
		{cmds: cmds(4), origin: bytes.Repeat([]byte{7}, maxOriginLen)},
	}
	type got struct {
		tag           string
		offset, count uint64
	}
	var seen []got
	if err := decodeOrigins(encodeOrigins(batch), func(tag []byte, offset, count uint64) {
		seen = append(seen, got{string(tag), offset, count})
	}); err != nil {
		t.Fatal(err)
	}
	want := []got{{"first-tag", 2, 3}, {string(bytes.Repeat([]byte{7}, maxOriginLen)), 6, 4}}
	if len(seen) != len(want) || seen[0] != want[0] || seen[1] != want[1] {
		t.Fatalf("decoded %v, want %v", seen, want)
	}
	if ext := encodeOrigins(batch[:1]); ext != nil {
		t.Fatalf("a batch without tags has extensions %x", ext)
	}
}

func TestMalformedEntryOriginsAreRefused(t *testing.T) {
	for name, ext := range map[string][]byte{
		"empty":              {},
		"unknown version":    {2, 1, 'a', 0, 1},
		"tag past the end":   {originsVersion, 5, 'a'},
		"tag over the limit": append([]byte{originsVersion, maxOriginLen + 1}, make([]byte, maxOriginLen+3)...),
		"no count":           {originsVersion, 1, 'a', 0},
		"bad varint":         {originsVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		t.Run(name, func(t *testing.T) {
			if err := decodeOrigins(ext, func([]byte, uint64, uint64) {}); !errors.Is(err, errOrigins) {
				t.Fatalf("decode %x: %v, want errOrigins", ext, err)
			}
		})
	}
}

// FuzzDecodeOrigins: any bytes in an entry's Extensions are refused or
// decoded without panicking, and every tag decoded lies within the limit.
func FuzzDecodeOrigins(f *testing.F) {
	f.Add(encodeOrigins([]*proposal{{cmds: make([]fsm.Command, 2), origin: []byte("0123456789abcdef")}}))
	f.Add([]byte{originsVersion, 0x80})
	f.Add([]byte{originsVersion, 1, 'x', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1})
	f.Fuzz(func(t *testing.T, ext []byte) {
		_ = decodeOrigins(ext, func(tag []byte, _, _ uint64) {
			if len(tag) > maxOriginLen {
				t.Fatalf("tag of %d bytes", len(tag))
			}
		})
		entry := &raft.Log{Index: 3, Extensions: ext}
		l, err := newLocalAnswers()
		if err != nil {
			t.Fatal(err)
		}
		l.applied(entry, make([]fsm.Result, 4))
	})
}

// Only this process's waiting batches are answered, and only with as many
// results as they forwarded commands.
func TestLocalAnswersMatchOnlyThisProcesssTags(t *testing.T) {
	l, err := newLocalAnswers()
	if err != nil {
		t.Fatal(err)
	}
	other, err := newLocalAnswers()
	if err != nil {
		t.Fatal(err)
	}
	results := []fsm.Result{{Revision: 1}, {Revision: 2}, {Revision: 3}}
	entry := func(tag []byte, count int) *raft.Log {
		ext := encodeOrigins([]*proposal{{cmds: make([]fsm.Command, 1)}, {cmds: make([]fsm.Command, count), origin: tag}})
		return &raft.Log{Index: 9, Extensions: ext}
	}
	cases := []struct {
		name   string
		tag    func(mine []byte) []byte
		expect int // commands forwarded
		count  int // commands the entry says the batch has
		answer bool
	}{
		{"own tag", func(mine []byte) []byte { return mine }, 2, 2, true},
		{"another process's tag", func([]byte) []byte { tag, _, forget := other.expect(2); forget(); return tag }, 2, 2, false},
		{"count differs", func(mine []byte) []byte { return mine }, 2, 1, false},
		{"past the results", func(mine []byte) []byte { return mine }, 3, 3, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mine, ch, forget := l.expect(tc.expect)
			defer forget()
			before := l.answered.Load()
			l.applied(entry(tc.tag(mine), tc.count), results)
			var resp *rookeryv1.PeerApplyResponse
			select {
			case resp = <-ch:
			default:
			}
			if (resp != nil) != tc.answer || l.answered.Load()-before != map[bool]uint64{true: 1}[tc.answer] {
				t.Fatalf("answered %v (%d counted), want %v", resp != nil, l.answered.Load()-before, tc.answer)
			}
			if resp == nil {
				return
			}
			got, err := fsm.DecodeResults(resp.GetResults())
			if err != nil || resp.GetIndex() != 9 || len(got) != 2 || got[0].Revision != 2 || got[1].Revision != 3 {
				t.Fatalf("answer %v index %d err %v, want revisions 2, 3 at 9", got, resp.GetIndex(), err)
			}
		})
	}
}

// A write through a follower is answered once the follower has applied
// it, while the leader has heard nothing back yet (every acknowledgement
// held): the answer comes from the follower's own apply. With
// CommitAtLeaderOnly it must wait for the leader.
func TestAWriteThroughAFollowerIsAnsweredFromItsOwnApply(t *testing.T) {
	cases := []struct {
		name       string
		leaderOnly bool
	}{
		{"commit on store", false},
		{"CommitAtLeaderOnly", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := holdCommits(t, ReadLinearizable, func(cfg *Config) { cfg.CommitAtLeaderOnly = tc.leaderOnly })
			before := h.leader.node.raft.CommitIndex()
			ctx, cancel := context.WithTimeout(testCtx(t), time.Second)
			res, err := h.near.node.ApplyCommitted(ctx, []fsm.Command{reserve("user.held", "imap-be01!default")})
			cancel()
			if tc.leaderOnly {
				if err == nil {
					t.Fatal("the write was answered while the leader could not commit it")
				}
				return
			}
			if err != nil || len(res) != 1 || res[0].Code != fsm.CodeOK {
				t.Fatalf("write through %s: %v %v", h.near.cfg.NodeID, res, err)
			}
			if n := h.near.node.answers.answered.Load(); n != 1 {
				t.Fatalf("%d writes answered from the follower's apply, want 1", n)
			}
			if got := h.leader.node.raft.CommitIndex(); got != before {
				t.Fatalf("the leader's commit index moved %d → %d while every acknowledgement was held: the test proves nothing", before, got)
			}
		})
	}
}
