package mupdatecompat

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
)

// FuzzSession feeds arbitrary client bytes to a whole session (after a
// real login, so every command is reachable) over an in-memory pipe. The
// session must never panic and must end once the input ends; writes must
// leave the directory valid. Seeds in testdata/fuzz/FuzzSession run as
// ordinary tests.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"X0 RESERVE {15+}\r\nuser.alice.Sent {11+}\r\nbe1!default\r\nX1 ACTIVATE {15+}\r\nuser.alice.Sent {11+}\r\nbe1!default {21+}\r\nalice\tlrswipkxtecdan\t\r\nQ01 LOGOUT\r\n",
		"L1 LIST\r\nF1 FIND \"user.alice\"\r\nF2 FIND {3}\r\nabc\r\n",
		"U01 UPDATE \"be1\"\r\nN0 NOOP\r\nX0 RESERVE \"a\" \"b\"\r\nN1 NOOP\r\n",
		"C01 COMPRESS \"DEFLATE\"\r\n",
		"A02 AUTHENTICATE \"LOGIN\"\r\n*\r\nX0 DELETE \"nosuch\"\r\n",
		"X0 DEACTIVATE \"a\" \"b!c\"\r\nX1 UPDATE \"\" \"x\"\r\n\r\n\x00\xff\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		dir := directory.NewLocal(fsm.New(fsm.Config{HistorySize: 64}))
		cfg := testConfig()
		cfg.IdleTimeout = 2 * time.Second
		cfg.WriteTimeout = 2 * time.Second
		srv, err := NewServer(cfg, directory.NewService(dir, dir.Store()), testAuthenticator(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		client, server := net.Pipe()
		defer client.Close()
		c := newConn(srv, server, false)
		done := make(chan struct{})
		go func() { c.serve(); close(done) }()
		go io.Copy(io.Discard, client) // the server's output is not checked here
		ir := plainIR("mupdate", "mupdatepw")
		client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		client.Write([]byte("A01 AUTHENTICATE \"PLAIN\" \"" + ir + "\"\r\n"))
		client.Write(input)
		client.Write([]byte("\r\nZ99 LOGOUT\r\n"))
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("session did not end after its input ended")
		}
		dir.Store().View().ScanName("", func(e fsm.Entry) bool {
			if err := fsm.Validate(fsm.Command{Op: fsm.OpActivate, Name: e.Name, Location: e.Location, ACL: e.ACL}); err != nil {
				t.Fatalf("invalid entry stored: %+v: %v", e, err)
			}
			return true
		})
	})
}
