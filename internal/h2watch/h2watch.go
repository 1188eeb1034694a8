// Package h2watch lets tests see the HTTP/2 frames a gRPC client's
// connections carry. gRPC hides its control frames (PINGs, window updates)
// from callers, yet they cost real messages and wake-ups on both ends; a
// test that must prove a setting removed them needs to count them on the
// wire.
package h2watch

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http2"
)

// Pings counts the PING frames (not their acknowledgements) on the
// connections opened through Dial: those the client sent and those it
// received. The zero value is ready to use; call Wait once every connection
// is closed.
type Pings struct {
	sent, received atomic.Int64
	wg             sync.WaitGroup
}

// Sent is the number of PINGs the client sent.
func (p *Pings) Sent() int64 { return p.sent.Load() }

// Received is the number of PINGs the server sent.
func (p *Pings) Received() int64 { return p.received.Load() }

// Wait waits for the frame parsers of closed connections to finish.
func (p *Pings) Wait() { p.wg.Wait() }

// Dial is a grpc.WithContextDialer dialer: it connects to addr over TCP
// and parses both directions of the connection.
func (p *Pings) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	out := p.watch(&p.sent, len(http2.ClientPreface))
	in := p.watch(&p.received, 0)
	return &teeConn{Conn: c, out: out, in: in}, nil
}

// watch returns a writer whose bytes, after a preface of skip bytes, are
// parsed as HTTP/2 frames, PINGs counted into n.
func (p *Pings) watch(n *atomic.Int64, skip int) *io.PipeWriter {
	pr, pw := io.Pipe()
	p.wg.Go(func() {
		defer pr.Close()
		if _, err := io.CopyN(io.Discard, pr, int64(skip)); err != nil {
			return
		}
		fr := http2.NewFramer(nil, pr)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				// Drain, so the connection never blocks on its copy.
				_, _ = io.Copy(io.Discard, pr)
				return
			}
			if ping, ok := f.(*http2.PingFrame); ok && !ping.IsAck() {
				n.Add(1)
			}
		}
	})
	return pw
}

// teeConn copies what a connection carries to two frame parsers.
type teeConn struct {
	net.Conn
	out, in *io.PipeWriter
}

func (c *teeConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	_, _ = c.out.Write(b[:n])
	return n, err
}

func (c *teeConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	_, _ = c.in.Write(b[:n])
	return n, err
}

var errClosed = errors.New("h2watch: connection closed")

func (c *teeConn) Close() error {
	c.out.CloseWithError(errClosed)
	c.in.CloseWithError(errClosed)
	return c.Conn.Close()
}
