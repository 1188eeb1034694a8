package floor

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/rookery/rookery/fsm"
)

// The forward link (kindForward) is the follower's path to the leader:
// the one extra hop each way that a Rookery follower pays when it
// forwards a MUPDATE write or read barrier to its raft leader. As every
// link, the leader dials it and the token authenticates it, so a follower
// needs no leader address. Over it the follower asks and the leader
// answers. Each frame carries an id, so answers may come back out of
// order: the leader handles every request at once in a goroutine of its
// own, and writes from many client connections on the follower join the
// same leader batches as its own clients' writes do.

// Forward frame kinds.
const (
	fwdWrite  byte = 'W' // follower → leader: payload fsm.EncodeCommands
	fwdRead   byte = 'R' // follower → leader: a read barrier, no payload
	fwdAnswer byte = 'A' // leader → follower: index, and fsm.EncodeResults for a write
	fwdFailed byte = 'E' // leader → follower: payload is the error's text
)

// fwdHeader is a forward frame's header: id, kind, index, payload length.
const fwdHeader = 8 + 1 + 8 + 4

// fwdFrame is one request or answer on the forward link. index is, in an
// answer, the log sequence the follower must have applied to see the
// write or read: the write's batch, or the leader's applied index after
// the read barrier.
type fwdFrame struct {
	id      uint64
	kind    byte
	index   uint64
	payload []byte
}

func putForward(buf []byte, fr fwdFrame) []byte {
	buf = binary.BigEndian.AppendUint64(buf[:0], fr.id)
	buf = append(buf, fr.kind)
	buf = binary.BigEndian.AppendUint64(buf, fr.index)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(fr.payload)))
	return append(buf, fr.payload...)
}

// readForward reads one forward frame. An unknown kind or a length above
// maxFrame is an error before anything is allocated for the payload.
func readForward(r *bufio.Reader) (fwdFrame, error) {
	var h [fwdHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return fwdFrame{}, err
	}
	fr := fwdFrame{id: binary.BigEndian.Uint64(h[0:]), kind: h[8], index: binary.BigEndian.Uint64(h[9:])}
	switch fr.kind {
	case fwdWrite, fwdRead, fwdAnswer, fwdFailed:
	default:
		return fwdFrame{}, fmt.Errorf("floor: forward frame of unknown kind %q", fr.kind)
	}
	n := binary.BigEndian.Uint32(h[17:])
	if n > maxFrame {
		return fwdFrame{}, fmt.Errorf("floor: forward frame of %d bytes", n)
	}
	fr.payload = make([]byte, n)
	if _, err := io.ReadFull(r, fr.payload); err != nil {
		return fwdFrame{}, fmt.Errorf("floor: forward frame cut short: %w", err)
	}
	return fr, nil
}

// fwdWriter sends whole frames on a link, one at a time, for the many
// goroutines that share it.
type fwdWriter struct {
	c   net.Conn
	mu  sync.Mutex
	buf []byte
}

func (w *fwdWriter) send(fr fwdFrame) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = putForward(w.buf, fr)
	_, err := w.c.Write(w.buf)
	return err
}

// serveForward answers follower i's forwarded requests, each in a
// goroutine of its own, so that concurrent ones share the leader's batches
// and pings. A frame that is not a request ends the link: the follower
// then fails its waiting calls.
func (l *Leader) serveForward(i int, c net.Conn) {
	r := bufio.NewReader(c)
	w := &fwdWriter{c: c}
	for {
		req, err := readForward(r)
		if err == nil && req.kind != fwdWrite && req.kind != fwdRead {
			err = fmt.Errorf("floor: forward frame of kind %q is no request", req.kind)
		}
		if err != nil {
			if l.ctx.Err() == nil {
				l.log.Warn("floor: forward link ended", "follower", i, "err", err)
			}
			c.Close()
			return
		}
		// A failed send means the link is gone; the loop above sees it.
		l.goRun(func() { _ = w.send(l.answerForward(req)) })
	}
}

// answerForward runs one forwarded request as the leader's own: a write
// joins the next batch, a read waits for a follower's pong.
func (l *Leader) answerForward(req fwdFrame) fwdFrame {
	ans := fwdFrame{id: req.id, kind: fwdAnswer}
	var err error
	switch req.kind {
	case fwdWrite:
		ans.index, ans.payload, err = l.forwardedWrite(req.payload)
	case fwdRead:
		err = l.LinearizableRead(l.ctx)
		ans.index = l.store.AppliedIndex()
	}
	if err != nil {
		return fwdFrame{id: req.id, kind: fwdFailed, payload: []byte(err.Error())}
	}
	return ans
}

// forwardedWrite applies a forwarded write under the leader's own
// context: the follower's caller's deadline does not travel, and, as with
// a raft proposal, a write that reached the leader goes on if it gives up.
func (l *Leader) forwardedWrite(payload []byte) (uint64, []byte, error) {
	cmds, err := fsm.DecodeCommands(payload)
	if err != nil {
		return 0, nil, err
	}
	o := l.apply(l.ctx, cmds)
	if o.err != nil {
		return 0, nil, o.err
	}
	return o.seq, fsm.EncodeResults(o.results), nil
}
