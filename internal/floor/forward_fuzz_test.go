package floor

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/rookery/rookery/fsm"
)

// FuzzReadForward feeds the forward link's frame reader arbitrary bytes:
// it must refuse what is not a frame without panicking, and a frame it
// accepts must be exactly the bytes it read.
func FuzzReadForward(f *testing.F) {
	f.Add(putForward(nil, fwdFrame{id: 1, kind: fwdWrite, payload: fsm.EncodeCommands([]fsm.Command{activate("user.a")})}))
	f.Add(putForward(nil, fwdFrame{id: 2, kind: fwdRead}))
	f.Add(putForward(nil, fwdFrame{id: 3, kind: fwdAnswer, index: 7, payload: fsm.EncodeResults([]fsm.Result{{Code: fsm.CodeOK, Revision: 4}})}))
	f.Add(putForward(nil, fwdFrame{id: 4, kind: fwdFailed, payload: []byte("floor: closed")}))
	f.Add(binary.BigEndian.AppendUint32(putForward(nil, fwdFrame{id: 5, kind: fwdAnswer})[:fwdHeader-4], maxFrame+1))
	f.Add(putForward(nil, fwdFrame{id: 6, kind: 'Z'}))
	f.Add([]byte("W"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := readForward(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		if got := putForward(nil, fr); !bytes.Equal(got, b[:len(got)]) {
			t.Fatalf("read %+v from %x, which encodes as %x", fr, b, got)
		}
	})
}
