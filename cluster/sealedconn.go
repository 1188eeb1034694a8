package cluster

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// sealedConn carries a raft connection in AES-256-GCM frames after the
// handshake: confidential, and tamper-evident, so a machine in the middle
// that relayed the handshake can neither read nor alter nor splice the
// traffic that follows.
//
// Frame: length(4, big endian, of the ciphertext) ‖ ciphertext. The
// length is the AEAD's additional data; the nonce is a per-direction frame
// counter (each direction has its own key, so counters never collide), so
// a dropped, repeated or reordered frame fails to open.
type sealedConn struct {
	net.Conn

	rmu     sync.Mutex
	rd      *bufio.Reader // ciphertext from Conn: one read usually brings a whole frame
	recv    cipher.AEAD
	rseq    uint64
	rhdr    [frameHeaderLen]byte
	rbuf    []byte // ciphertext of the current frame
	plain   []byte // opened plaintext not yet returned
	readErr error  // sticky: after a bad or partial frame the stream is lost

	wmu      sync.Mutex
	send     cipher.AEAD
	wseq     uint64
	wbuf     []byte
	writeErr error
}

const (
	frameHeaderLen = 4
	// maxFramePlain bounds one frame's plaintext; raft's 256 KiB write
	// buffer becomes four frames.
	maxFramePlain = 64 << 10
	gcmOverhead   = 16
	// sealedReadBuffer holds a whole frame of the largest size, so its
	// header and body, and often the frames after it, arrive with one read
	// system call instead of one each (raft's small RPCs are most frames).
	sealedReadBuffer = frameHeaderLen + maxFramePlain + gcmOverhead
)

var errFrame = errors.New("raft link: bad frame")

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func newSealedConn(c net.Conn, keys linkKeys) (*sealedConn, error) {
	send, err := newAEAD(keys.send)
	if err != nil {
		return nil, err
	}
	recv, err := newAEAD(keys.recv)
	if err != nil {
		return nil, err
	}
	return &sealedConn{Conn: c, rd: bufio.NewReaderSize(c, sealedReadBuffer), send: send, recv: recv}, nil
}

func frameNonce(seq uint64) []byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[4:], seq)
	return n[:]
}

// Read returns plaintext from the current frame, reading and opening the
// next one when it is used up.
func (c *sealedConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	for len(c.plain) == 0 {
		if c.readErr != nil {
			return 0, c.readErr
		}
		if err := c.readFrame(); err != nil {
			c.readErr = err
			return 0, err
		}
	}
	n := copy(p, c.plain)
	c.plain = c.plain[n:]
	return n, nil
}

func (c *sealedConn) readFrame() error {
	if _, err := io.ReadFull(c.rd, c.rhdr[:]); err != nil {
		return err // io.EOF on a clean close between frames
	}
	n := binary.BigEndian.Uint32(c.rhdr[:])
	if n < gcmOverhead || n > maxFramePlain+gcmOverhead {
		return fmt.Errorf("%w: length %d", errFrame, n)
	}
	if cap(c.rbuf) < int(n) {
		c.rbuf = make([]byte, n, maxFramePlain+gcmOverhead)
	}
	c.rbuf = c.rbuf[:n]
	if _, err := io.ReadFull(c.rd, c.rbuf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if c.rseq == ^uint64(0) {
		return fmt.Errorf("%w: frame counter exhausted", errFrame)
	}
	plain, err := c.recv.Open(c.rbuf[:0], frameNonce(c.rseq), c.rbuf, c.rhdr[:])
	if err != nil {
		return fmt.Errorf("%w: does not authenticate", errFrame)
	}
	c.rseq++
	c.plain = plain
	return nil
}

// Write seals p into frames and writes them; a failed write leaves the
// stream unusable, as raft expects of a broken connection.
func (c *sealedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.writeErr != nil {
		return 0, c.writeErr
	}
	written := 0
	for len(p) > 0 {
		chunk := p
		if len(chunk) > maxFramePlain {
			chunk = chunk[:maxFramePlain]
		}
		if c.wseq == ^uint64(0) {
			c.writeErr = fmt.Errorf("%w: frame counter exhausted", errFrame)
			return written, c.writeErr
		}
		need := frameHeaderLen + len(chunk) + gcmOverhead
		if cap(c.wbuf) < need {
			c.wbuf = make([]byte, 0, frameHeaderLen+maxFramePlain+gcmOverhead)
		}
		var hdr [frameHeaderLen]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(chunk)+gcmOverhead))
		buf := append(c.wbuf[:0], hdr[:]...)
		buf = c.send.Seal(buf, frameNonce(c.wseq), chunk, hdr[:])
		c.wseq++
		if _, err := c.Conn.Write(buf); err != nil {
			c.writeErr = err
			return written, err
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}
