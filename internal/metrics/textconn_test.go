package metrics_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"time"
)

// textConn is a line-oriented TCP client for a test's few IMAP lines.
type textConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialText(addr string) (*textConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(15 * time.Second))
	return &textConn{c: c, r: bufio.NewReader(c)}, nil
}

func (t *textConn) line() (string, error) {
	l, err := t.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

func (t *textConn) send(s string) error {
	_, err := io.WriteString(t.c, s)
	return err
}

func (t *textConn) close() { t.c.Close() }
