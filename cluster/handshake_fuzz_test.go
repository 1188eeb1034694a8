package cluster

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// rw is one side of a handshake fed from fixed bytes: reads come from the
// fuzzer's input, writes are kept.
type rw struct {
	io.Reader
	out bytes.Buffer
}

func (r *rw) Write(p []byte) (int, error) { return r.out.Write(p) }

var fuzzSecret = []byte(testRaftSecret)

// FuzzServerHandshake feeds arbitrary client bytes to the server side: it
// must refuse every one (no input proves the secret without knowing the
// server's fresh nonce) and never panic or read past its fixed sizes.
func FuzzServerHandshake(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte(handshakeMagic))
	f.Add(append([]byte(handshakeMagic), make([]byte, handshakeNonceLen+handshakeProofLen)...))
	f.Add([]byte("\x00\x00\x00\x00\x01\x02\x03 raft msgpack AppendEntries"))
	authKey, err := deriveAuthKey(fuzzSecret)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		conn := &rw{Reader: bytes.NewReader(in)}
		if _, err := serverHandshake(conn, fuzzSecret, authKey); err == nil {
			t.Fatalf("server accepted %q", in)
		} else if !errors.Is(err, errHandshake) {
			t.Fatalf("error %v does not wrap errHandshake", err)
		}
		if n := conn.out.Len(); n != 0 && n != serverHelloLen {
			t.Fatalf("server wrote %d bytes", n)
		}
	})
}

// FuzzClientHandshake feeds arbitrary server replies to the client side.
func FuzzClientHandshake(f *testing.F) {
	f.Add([]byte{})
	f.Add(append([]byte(handshakeMagic), make([]byte, handshakeNonceLen+handshakeProofLen)...))
	f.Add(bytes.Repeat([]byte{0xff}, serverHelloLen+10))
	authKey, err := deriveAuthKey(fuzzSecret)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		conn := &rw{Reader: bytes.NewReader(in)}
		if _, err := clientHandshake(conn, fuzzSecret, authKey); err == nil {
			t.Fatalf("client accepted server hello %q", in)
		}
		// The client's proof is only ever sent after a valid server proof.
		if n := conn.out.Len(); n != clientHelloLen {
			t.Fatalf("client wrote %d bytes, want only its %d-byte hello", n, clientHelloLen)
		}
	})
}

// fixedConn is a net.Conn reading from fixed bytes.
type fixedConn struct {
	net.Conn // nil: only Read is used
	r        io.Reader
}

func (c fixedConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c fixedConn) SetDeadline(time.Time) error      { return nil }
func (c fixedConn) SetReadDeadline(time.Time) error  { return nil }
func (c fixedConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzSealedConnRead feeds arbitrary bytes to a sealed connection's reader.
// The only frames sealed with its key are the seeds' (frame 0 "hello raft",
// frame 1 a hundred "x"), and each is bound to its position by the nonce,
// so whatever it returns must be a prefix of that plaintext; no length field
// may make it allocate beyond one frame, and it never panics.
func FuzzSealedConnRead(f *testing.F) {
	keys := linkKeys{send: bytes.Repeat([]byte{1}, sessionKeyLen), recv: bytes.Repeat([]byte{1}, sessionKeyLen)}
	plain := append([]byte("hello raft"), bytes.Repeat([]byte("x"), 100)...)
	var sealed bytes.Buffer
	w, err := newSealedConn(writerConn{&sealed}, keys)
	if err != nil {
		f.Fatal(err)
	}
	_, _ = w.Write(plain[:10])
	f.Add(append([]byte(nil), sealed.Bytes()...))
	_, _ = w.Write(plain[10:])
	f.Add(append([]byte(nil), sealed.Bytes()...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 16})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := newSealedConn(fixedConn{r: bytes.NewReader(in)}, keys)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if !bytes.HasPrefix(plain, got) {
			t.Fatalf("read %q, not a prefix of what was sealed", got)
		}
		if err != nil && !errors.Is(err, errFrame) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("read error %v", err)
		}
		if cap(c.rbuf) > maxFramePlain+gcmOverhead {
			t.Fatalf("frame buffer grew to %d bytes", cap(c.rbuf))
		}
	})
}

// writerConn is a net.Conn writing into a buffer.
type writerConn struct{ w io.Writer }

func (c writerConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c writerConn) Write(p []byte) (int, error)      { return c.w.Write(p) }
func (c writerConn) Close() error                     { return nil }
func (c writerConn) LocalAddr() net.Addr              { return nil }
func (c writerConn) RemoteAddr() net.Addr             { return nil }
func (c writerConn) SetDeadline(time.Time) error      { return nil }
func (c writerConn) SetReadDeadline(time.Time) error  { return nil }
func (c writerConn) SetWriteDeadline(time.Time) error { return nil }
