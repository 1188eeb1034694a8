package floor

import (
	"bufio"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// TokenSize is the length of the secret a node's peer must send first.
const TokenSize = 32

// Link kinds, sent after the token.
const (
	kindLog  byte = 'L' // leader → follower frames, follower → leader acks
	kindPing byte = 'P' // read confirmations
	// kindForward carries a follower's forwarded writes and read barriers
	// to the leader and its answers back (forward.go).
	kindForward byte = 'F'
)

// maxFrame bounds one replicated frame, so a bad length cannot make a
// follower allocate without limit.
const maxFrame = 16 << 20

var errBadToken = errors.New("floor: peer sent a wrong token")

// dialLink connects to a follower and authenticates as kind.
func dialLink(addr string, token []byte, kind byte) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(append(append([]byte{}, token...), kind)); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// acceptLink reads a peer's token and kind within a second.
func acceptLink(c net.Conn, token []byte) (byte, error) {
	if err := c.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		return 0, err
	}
	hello := make([]byte, TokenSize+1)
	if _, err := io.ReadFull(c, hello); err != nil {
		return 0, fmt.Errorf("floor: read hello: %w", err)
	}
	if subtle.ConstantTimeCompare(hello[:TokenSize], token) != 1 {
		return 0, errBadToken
	}
	return hello[TokenSize], c.SetReadDeadline(time.Time{})
}

// frameHeader is a log frame's header: sequence, payload length.
const frameHeader = 12

func putFrame(buf []byte, seq uint64, payload []byte) []byte {
	buf = binary.BigEndian.AppendUint64(buf[:0], seq)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(payload)))
	return append(buf, payload...)
}

// readFrame reads one log frame.
func readFrame(r *bufio.Reader) (uint64, []byte, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[8:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("floor: frame of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return binary.BigEndian.Uint64(h[:8]), p, nil
}

// frameBuffered reports whether a whole frame waits in r's buffer.
func frameBuffered(r *bufio.Reader) bool {
	if r.Buffered() < frameHeader {
		return false
	}
	h, err := r.Peek(frameHeader)
	return err == nil && r.Buffered() >= frameHeader+int(binary.BigEndian.Uint32(h[8:]))
}
