package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"strings"

	"github.com/rookery/rookery/internal/imapwire"
)

// go-imap v2.0.0-beta.8's imapserver knows no ACL (RFC 4314), QUOTA
// (RFC 9208) or ID (RFC 2971) commands and answers them "BAD Unknown
// command"; its CAPABILITY lists only capabilities it knows. So the
// handoff connection looks at each command before imapserver reads it:
// the commands below it answers itself (imap_ext.go), everything else it
// passes through byte for byte. This is safe because imapserver handles
// one command at a time and has written and flushed every response to a
// command before it reads the next one, so at a command boundary the
// gateway owns the client connection in both directions.
var interceptedCommands = map[string]bool{
	"CAPABILITY": true, "ID": true,
	"GETACL": true, "SETACL": true, "DELETEACL": true, "MYRIGHTS": true, "LISTRIGHTS": true,
	"GETQUOTA": true, "GETQUOTAROOT": true,
}

// interceptor is the read side of a handoff connection.
type interceptor struct {
	br   *bufio.Reader
	conn io.Writer // the client, for intercepted answers
	run  func(cmd *imapwire.Command) string

	out     []byte // bytes to hand to imapserver
	literal int64  // literal bytes still to pass through
	midCmd  bool   // the next line continues a command (after a literal, or DONE after IDLE)
	midLine bool   // the current line is longer than the buffer
}

const maxInterceptLine = 64 << 10

func newInterceptor(r io.Reader, conn io.Writer, run func(*imapwire.Command) string) *interceptor {
	return &interceptor{br: bufio.NewReaderSize(r, maxInterceptLine), conn: conn, run: run}
}

func (in *interceptor) Read(p []byte) (int, error) {
	for {
		if len(in.out) > 0 {
			n := copy(p, in.out)
			in.out = in.out[n:]
			return n, nil
		}
		if in.literal > 0 {
			n, err := in.br.Read(p[:min(int64(len(p)), in.literal)])
			in.literal -= int64(n)
			return n, err
		}
		line, complete, err := in.peekLine()
		if err != nil {
			return 0, err
		}
		if !complete || in.midCmd || in.midLine {
			in.pass(len(line), complete)
			continue
		}
		name, idle := commandName(line)
		if !interceptedCommands[name] {
			in.pass(len(line), complete)
			in.midCmd = in.midCmd || idle
			continue
		}
		if err := in.intercept(); err != nil {
			return 0, err
		}
	}
}

// peekLine returns the next line (through LF) without consuming it, or
// as much as the buffer holds when the line is longer.
func (in *interceptor) peekLine() (line []byte, complete bool, err error) {
	if _, err := in.br.Peek(1); err != nil {
		return nil, false, err
	}
	for {
		b, _ := in.br.Peek(in.br.Buffered())
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return b[:i+1], true, nil
		}
		if len(b) == in.br.Size() {
			return b, false, nil
		}
		if _, err := in.br.Peek(len(b) + 1); err != nil {
			return nil, false, err
		}
	}
}

// pass hands n bytes of the current line to imapserver, noting a literal
// announced at its end.
func (in *interceptor) pass(n int, complete bool) {
	b := make([]byte, n)
	io.ReadFull(in.br, b) // buffered: cannot fail
	in.out = b
	in.midLine = !complete
	if !complete {
		return
	}
	in.midCmd = false
	if lit, _, ok := imapwire.TrailingLiteral(bytes.TrimRight(b, "\r\n")); ok && lit <= math.MaxInt64 {
		in.literal = int64(lit)
		in.midCmd = true
	}
}

// intercept reads one whole command (with any literals) and answers it.
func (in *interceptor) intercept() error {
	r := newIMAPReader(in.br, maxInterceptLine, maxInterceptLine, func() error {
		_, err := io.WriteString(in.conn, "+ Ready for literal data\r\n")
		return err
	})
	cmd, err := readIMAPCommand(r)
	var pe *imapwire.Error
	if errors.As(err, &pe) {
		tag := pe.Tag
		if tag == "" {
			tag = "*"
		}
		_, err = io.WriteString(in.conn, tag+" BAD "+pe.Text+"\r\n")
		return err
	}
	if err != nil {
		return err
	}
	_, err = io.WriteString(in.conn, in.run(cmd))
	return err
}

// commandName returns the upper-case command name of a command line and
// whether it is IDLE (whose DONE line must pass untouched).
func commandName(line []byte) (string, bool) {
	f := strings.Fields(string(line))
	if len(f) < 2 {
		return "", false
	}
	name := strings.ToUpper(f[1])
	return name, name == "IDLE"
}
