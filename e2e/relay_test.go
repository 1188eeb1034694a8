package e2e

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// startFailoverRelay listens on a free loopback port and relays each
// connection to the first of targets that accepts it. It stands in for what
// production uses to give Cyrus one mupdate_server for every node: a DNS
// name with all node addresses (Cyrus tries each in turn) or a TCP load
// balancer.
func startFailoverRelay(t testing.TB, targets []string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); relay(c, targets) }()
		}
	}()
	return ln.Addr().String()
}

func relay(c net.Conn, targets []string) {
	defer c.Close()
	var up net.Conn
	for _, addr := range targets {
		var err error
		if up, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			break
		}
	}
	if up == nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}
