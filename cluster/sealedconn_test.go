package cluster

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// byteConn is a net.Conn over in-memory bytes that counts the reads made
// on it: each stands for one read system call on a socket.
type byteConn struct {
	net.Conn
	in    *bytes.Reader
	out   bytes.Buffer
	reads int
}

func (c *byteConn) Read(p []byte) (int, error)  { c.reads++; return c.in.Read(p) }
func (c *byteConn) Write(p []byte) (int, error) { return c.out.Write(p) }

func sealedPair(t *testing.T) (writer, reader func(net.Conn) *sealedConn) {
	t.Helper()
	a, b := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	open := func(keys linkKeys) func(net.Conn) *sealedConn {
		return func(c net.Conn) *sealedConn {
			sc, err := newSealedConn(c, keys)
			if err != nil {
				t.Fatal(err)
			}
			return sc
		}
	}
	return open(linkKeys{send: a, recv: b}), open(linkKeys{send: b, recv: a})
}

// TestSealedConnReadsSmallFramesWithFewSystemCalls: raft's RPCs are mostly
// small frames. Reading each frame's header and body with a read apiece
// cost two system calls per frame; buffered, the frames already on the
// socket arrive together.
func TestSealedConnReadsSmallFramesWithFewSystemCalls(t *testing.T) {
	newWriter, newReader := sealedPair(t)
	wire := &byteConn{}
	w := newWriter(wire)
	var want []byte
	for i := range 8 {
		msg := bytes.Repeat([]byte{byte('a' + i)}, 100+i)
		if _, err := w.Write(msg); err != nil {
			t.Fatal(err)
		}
		want = append(want, msg...)
	}

	in := &byteConn{in: bytes.NewReader(wire.out.Bytes())}
	got, err := io.ReadAll(newReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, want the %d written", len(got), len(want))
	}
	// One read brings all eight frames, one more finds the end.
	if in.reads > 2 {
		t.Errorf("%d reads for 8 frames, want at most 2", in.reads)
	}
}

// TestSealedConnReadsFramesOfTheLargestSize: a frame as large as a frame
// may be still opens after buffering, and one larger is refused.
func TestSealedConnReadsFramesOfTheLargestSize(t *testing.T) {
	newWriter, newReader := sealedPair(t)
	wire := &byteConn{}
	msg := bytes.Repeat([]byte{7}, 3*maxFramePlain+5) // three full frames and a short one
	if _, err := newWriter(wire).Write(msg); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(newReader(&byteConn{in: bytes.NewReader(wire.out.Bytes())}))
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %d bytes, err %v; want %d", len(got), err, len(msg))
	}

	oversize := append([]byte{0, 1, 0, 17}, make([]byte, maxFramePlain+gcmOverhead+1)...)
	if _, err := io.ReadAll(newReader(&byteConn{in: bytes.NewReader(oversize)})); err == nil {
		t.Fatal("a frame longer than the largest was accepted")
	}
}
