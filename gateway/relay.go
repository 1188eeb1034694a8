package gateway

import (
	"context"
	"io"
	"net"
	"sync"
	"time"
)

// relay copies bytes both ways between a logged-in client and its backend
// until either side closes, then closes both. fromClient and fromBackend
// are bytes already read into the login-phase buffers; they go first.
//
// io.Copy between two *net.TCPConn uses splice(2) on Linux, so a plain
// (non-TLS) relay never copies message bodies through user space. Counts
// reach the metrics when the session ends.
func (s *Server) relay(ctx context.Context, client net.Conn, fromClient []byte, backend net.Conn, fromBackend []byte) {
	client.SetDeadline(time.Time{})
	backend.SetDeadline(time.Time{})
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			client.Close()
			backend.Close()
		})
	}
	stop := context.AfterFunc(ctx, closeBoth)
	defer stop()

	var up int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer closeBoth()
		if len(fromClient) > 0 {
			n, err := backend.Write(fromClient)
			up += int64(n)
			if err != nil {
				return
			}
		}
		n, _ := io.Copy(backend, client)
		up += n
	}()

	var down int64
	if len(fromBackend) > 0 {
		n, err := client.Write(fromBackend)
		down += int64(n)
		if err != nil {
			closeBoth()
		}
	}
	n, _ := io.Copy(client, backend)
	down += n
	closeBoth()
	<-done
	s.m.bytesToBackend.Add(uint64(up))
	s.m.bytesToClient.Add(uint64(down))
}
