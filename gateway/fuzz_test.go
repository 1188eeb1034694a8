package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/config"
	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/imapwire"
)

// Seeds live in testdata/fuzz/<FuzzName>/; run with e.g.
//
//	go test -run '^$' -fuzz FuzzIMAPPreLogin -fuzztime 30s ./gateway/

// FuzzIMAPReadCommand feeds arbitrary bytes to the pre-login command
// reader: it must never panic, never return more than its budgets allow,
// and always make progress.
func FuzzIMAPReadCommand(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		const maxLine, maxLit = 512, 256
		r := newIMAPReader(bufio.NewReaderSize(bytes.NewReader(in), 256), maxLine, maxLit, func() error { return nil })
		for i := 0; i <= len(in); i++ {
			cmd, err := readIMAPCommand(r)
			var pe *imapwire.Error
			switch {
			case err == nil:
				total := 0
				for _, a := range cmd.Args {
					total += len(a.Value)
				}
				if total > r.Limits().MaxCommandSize || cmd.Tag == "" || cmd.Name == "" {
					t.Fatalf("command beyond bounds: %+v", cmd)
				}
			case errors.As(err, &pe):
				if pe.Fatal {
					return
				}
			default:
				return // EOF or discard limit
			}
		}
		t.Fatal("reader made no progress")
	})
}

// fuzzServer is a gateway with a replica but no reachable backend and no
// failure delay, so sessions never touch the network.
func fuzzServer(t testing.TB) *Server {
	cfg := testConfig(nil)
	cfg.Limits.AuthFailureDelay = config.Duration(0)
	cfg.Limits.PreLoginTimeout = config.Duration(5 * time.Second)
	cfg.Limits.MaxLine, cfg.Limits.MaxLiteral = 1024, 512
	cfg.Servers["be1"] = ServerAddrs{IMAP: "", POP3: "", LMTP: "127.0.0.1:1"}
	rep := NewReplica(DefaultReplicaConfig())
	rep.Reset([]fsm.Entry{
		{Name: "user.alice", Location: "be1!default", State: fsm.StateActive},
		{Name: "user.moving", Location: "be1!default", State: fsm.StateReserved},
	}, 1)
	rep.SetReady(true)
	s, err := New(cfg, rep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// runSession plays in as the client of one session and returns what the
// gateway wrote. The session must end once the input is exhausted.
func runSession(t *testing.T, serve func(context.Context, net.Conn, bool), in []byte) []byte {
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve(context.Background(), server, false)
	}()
	var out bytes.Buffer
	readDone := make(chan struct{})
	go func() {
		io.Copy(&out, client)
		close(readDone)
	}()
	client.Write(in)
	client.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("session did not end after input %q", in)
	}
	<-readDone
	return out.Bytes()
}

func FuzzIMAPPreLogin(f *testing.F) {
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		out := runSession(t, s.serveIMAP, in)
		if !bytes.HasPrefix(out, []byte("* OK ")) {
			t.Fatalf("no greeting: %q", out)
		}
		for _, line := range splitCRLF(t, out) {
			if strings.HasPrefix(line, "* ") || strings.HasPrefix(line, "+ ") {
				continue
			}
			_, rest, ok := strings.Cut(line, " ")
			if !ok || !(strings.HasPrefix(rest, "OK") || strings.HasPrefix(rest, "NO") || strings.HasPrefix(rest, "BAD")) {
				t.Fatalf("malformed response line %q", line)
			}
			if strings.HasPrefix(rest, "OK [CAPABILITY") {
				t.Fatalf("login succeeded without a backend: %q", line)
			}
		}
	})
}

func FuzzPOP3PreLogin(f *testing.F) {
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		out := runSession(t, s.servePOP3, in)
		if !bytes.HasPrefix(out, []byte("+OK ")) {
			t.Fatalf("no greeting: %q", out)
		}
		for _, line := range splitCRLF(t, out) {
			if strings.HasPrefix(line, "+OK") && strings.Contains(line, "Mailbox locked") {
				t.Fatalf("login succeeded without a backend: %q", line)
			}
		}
	})
}

// splitCRLF splits output into lines, failing on a bare LF.
func splitCRLF(t *testing.T, out []byte) []string {
	var lines []string
	for len(out) > 0 {
		i := bytes.Index(out, []byte("\r\n"))
		if i < 0 {
			t.Fatalf("unterminated output %q", out)
		}
		line := string(out[:i])
		if strings.ContainsAny(line, "\r\n") {
			t.Fatalf("bare CR or LF in %q", line)
		}
		lines = append(lines, line)
		out = out[i+2:]
	}
	return lines
}
