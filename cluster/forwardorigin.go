package cluster

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/rookery/rookery/fsm"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// A write forwarded through a follower is answered from the follower's own
// apply when that comes first. With commit on store (storecommit.go) the
// follower applies the entry right after storing it, while the leader's
// answer still needs the follower's acknowledgement to travel back, the
// leader's commit and apply, and the reply's trip over ApplyStream.
//
// The follower tags each forwarded batch (PeerApplyRequest.origin); the
// leader lists the tags of an entry's batches in the entry's Extensions
// with where their commands sit in it; a follower that applies the entry
// finds its own tags and hands the waiting forward its slice of the
// results, which are the leader's, as every node applies the same entry
// to the same state. The leader's answer still comes and is dropped; it is
// the answer whenever it comes first, or the entry never applies here one
// by one (a snapshot installed over it), or a leader from before tags
// existed ignores them.
//
// A tag is this process's random nonce and a sequence number, so that an
// entry replayed from the log after a restart, whose tag an earlier
// process made, never matches a write waiting now.

// Extension layout: originsVersion, then per tagged batch the tag's
// length, the tag, the batch's first command and its number of commands,
// each number a uvarint.
const (
	originsVersion = 1
	maxOriginLen   = 64
)

// errOrigins is what a malformed extension reports.
var errOrigins = errors.New("cluster: malformed entry origins")

// encodeOrigins returns the Extensions of an entry holding batch's
// commands in order, or nil when no proposal carries a tag.
func encodeOrigins(batch []*proposal) []byte {
	var ext []byte
	off := 0
	for _, q := range batch {
		if len(q.origin) > 0 {
			if ext == nil {
				ext = []byte{originsVersion}
			}
			ext = binary.AppendUvarint(ext, uint64(len(q.origin)))
			ext = append(ext, q.origin...)
			ext = binary.AppendUvarint(ext, uint64(off))
			ext = binary.AppendUvarint(ext, uint64(len(q.cmds)))
		}
		off += len(q.cmds)
	}
	return ext
}

// decodeOrigins calls fn for every tagged batch in ext, in order, and
// fails on anything it does not understand (fn may have been called for
// the batches before).
func decodeOrigins(ext []byte, fn func(tag []byte, offset, count uint64)) error {
	if len(ext) == 0 || ext[0] != originsVersion {
		return errOrigins
	}
	p := ext[1:]
	for len(p) > 0 {
		var tag []byte
		n, k := binary.Uvarint(p)
		if k <= 0 || n > maxOriginLen || n > uint64(len(p)-k) {
			return errOrigins
		}
		tag, p = p[k:k+int(n)], p[k+int(n):]
		offset, k := binary.Uvarint(p)
		if k <= 0 {
			return errOrigins
		}
		p = p[k:]
		count, k := binary.Uvarint(p)
		if k <= 0 {
			return errOrigins
		}
		p = p[k:]
		fn(tag, offset, count)
	}
	return nil
}

// localAnswers holds this node's forwarded writes waiting for an answer,
// by tag sequence number.
type localAnswers struct {
	nonce [8]byte
	// answered counts the forwarded batches answered from this node's
	// own apply.
	answered atomic.Uint64

	mu      sync.Mutex
	next    uint64
	waiting map[uint64]localWait
}

type localWait struct {
	count int
	ch    chan *rookeryv1.PeerApplyResponse
}

func newLocalAnswers() (*localAnswers, error) {
	l := &localAnswers{waiting: map[uint64]localWait{}}
	if _, err := rand.Read(l.nonce[:]); err != nil {
		return nil, fmt.Errorf("cluster: origin nonce: %w", err)
	}
	return l, nil
}

// expect registers a forwarded batch of count commands. It returns the
// batch's tag, where its answer will arrive if this node applies the entry
// first, and the function that forgets it (call it once the batch is
// answered either way).
func (l *localAnswers) expect(count int) (tag []byte, answer <-chan *rookeryv1.PeerApplyResponse, forget func()) {
	ch := make(chan *rookeryv1.PeerApplyResponse, 1)
	l.mu.Lock()
	l.next++
	seq := l.next
	l.waiting[seq] = localWait{count: count, ch: ch}
	l.mu.Unlock()
	tag = binary.BigEndian.AppendUint64(append([]byte(nil), l.nonce[:]...), seq)
	return tag, ch, func() {
		l.mu.Lock()
		delete(l.waiting, seq)
		l.mu.Unlock()
	}
}

// applied is told of every command entry this node applies that carries
// Extensions, with the entry's results, and answers the waiting batches
// it names. An extension it cannot read answers nothing: the leader's
// answer will.
func (l *localAnswers) applied(entry *raft.Log, results []fsm.Result) {
	_ = decodeOrigins(entry.Extensions, func(tag []byte, offset, count uint64) {
		if len(tag) != 16 || !bytes.Equal(tag[:8], l.nonce[:]) {
			return
		}
		seq := binary.BigEndian.Uint64(tag[8:])
		l.mu.Lock()
		w, ok := l.waiting[seq]
		delete(l.waiting, seq)
		l.mu.Unlock()
		if !ok || uint64(w.count) != count || offset > uint64(len(results)) || count > uint64(len(results))-offset {
			return
		}
		l.answered.Add(1)
		w.ch <- &rookeryv1.PeerApplyResponse{Results: fsm.EncodeResults(results[offset : offset+count]), Index: entry.Index}
	})
}
