package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The pre-login IMAP reader. Before login the gateway is talking to an
// unauthenticated stranger, so every read is bounded: a line by maxLine,
// a literal by maxLiteral, a whole command (lines plus literals) by
// maxCommand. go-imap's wire parser is internal to that module and built
// for trusted peers, so the handful of productions the pre-login state
// needs (tag, command name, astrings, one level of parenthesised list for
// ID) are parsed here.

// argKind says how an argument was written.
type argKind uint8

const (
	argAtom argKind = iota + 1
	argQuoted
	argLiteral
	argListOpen
	argListClose
)

type imapArg struct {
	kind  argKind
	value string
}

// isString reports whether the argument is an astring (atom, quoted or
// literal), i.e. usable as a user name or password.
func (a imapArg) isString() bool {
	return a.kind == argAtom || a.kind == argQuoted || a.kind == argLiteral
}

type imapCommand struct {
	tag  string
	name string // upper case
	args []imapArg
}

// protoError is a client error that gets a BAD (or BYE when fatal).
type protoError struct {
	tag   string // "" when no valid tag was read: the answer is untagged
	code  string // response code without brackets, e.g. "TOOBIG"
	msg   string
	fatal bool // the stream cannot be resynchronised: answer BYE and close
}

func (e *protoError) Error() string { return e.msg }

// errLineTooLong is returned by readLine after the rest of the line has
// been discarded; prefix holds the first bytes (to recover a tag).
type errLineTooLong struct{ prefix []byte }

func (e *errLineTooLong) Error() string { return "line too long" }

// errDiscardLimit means an overlong line went on past the discard budget.
var errDiscardLimit = errors.New("gateway: overlong line exceeded the discard budget")

type lineReader struct {
	br      *bufio.Reader
	maxLine int
	// discard bounds how many bytes of an overlong line are skipped to
	// find its end before the connection is given up.
	discard int
}

// readLine returns one line without its CRLF (a bare LF is accepted). The
// returned slice is a copy.
func (l *lineReader) readLine() ([]byte, error) {
	var line []byte
	for {
		frag, err := l.br.ReadSlice('\n')
		if len(line)+len(frag) > l.maxLine+2 { // +2 for the CRLF itself
			prefix := append(line, frag...)[:min(len(line)+len(frag), 64)]
			prefix = bytes.Clone(prefix)
			if err == nil {
				return nil, &errLineTooLong{prefix: prefix}
			}
			if err := l.skipLine(len(line) + len(frag)); err != nil {
				return nil, err
			}
			return nil, &errLineTooLong{prefix: prefix}
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			line = line[:len(line)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

// skipLine discards up to the next LF, having already consumed seen bytes.
func (l *lineReader) skipLine(seen int) error {
	for seen <= l.discard {
		frag, err := l.br.ReadSlice('\n')
		seen += len(frag)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return err
		}
	}
	return errDiscardLimit
}

type imapReader struct {
	lineReader
	maxLiteral int
	maxCommand int
	// cont is called before reading a synchronising literal: it must send
	// the "+" continuation request.
	cont func() error
}

// readCommand reads one complete command. Client mistakes come back as
// *protoError with the input consumed up to the end of the command, so
// the session can answer BAD and go on; I/O errors come back unchanged.
func (r *imapReader) readCommand() (*imapCommand, error) {
	line, err := r.readLine()
	if err != nil {
		var tl *errLineTooLong
		if errors.As(err, &tl) {
			return nil, &protoError{tag: tagOf(tl.prefix), code: "TOOBIG", msg: "Line too long"}
		}
		if errors.Is(err, errDiscardLimit) {
			return nil, &protoError{code: "TOOBIG", msg: "Line too long", fatal: true}
		}
		return nil, err
	}
	p := cmdParser{s: line}
	tag := p.tag()
	if tag == "" || !p.consume(' ') {
		return nil, &protoError{msg: "Missing or invalid tag"}
	}
	cmd := &imapCommand{tag: tag}
	cmd.name = strings.ToUpper(p.atom())
	if cmd.name == "" {
		return nil, &protoError{tag: tag, msg: "Missing command"}
	}
	budget := r.maxCommand - len(line)
	if err := r.readArgs(cmd, &p, budget); err != nil {
		return nil, err
	}
	return cmd, nil
}

// readArgs tokenises the rest of the command, reading literals and the
// continuation lines that follow them.
func (r *imapReader) readArgs(cmd *imapCommand, p *cmdParser, budget int) error {
	bad := func(msg string) error { return &protoError{tag: cmd.tag, msg: msg} }
	depth := 0
	needSep := true
	for !p.eol() {
		if p.peek() == ')' {
			if depth == 0 {
				return bad("Unexpected ')'")
			}
			p.i++
			depth--
			cmd.args = append(cmd.args, imapArg{kind: argListClose})
			needSep = true
			continue
		}
		if needSep {
			if !p.consume(' ') || p.eol() {
				return bad("Invalid argument separator")
			}
		}
		needSep = true
		switch c := p.peek(); c {
		case '(':
			p.i++
			if depth++; depth > 4 {
				return bad("Lists nested too deeply")
			}
			cmd.args = append(cmd.args, imapArg{kind: argListOpen})
			needSep = false
		case '"':
			s, ok := p.quoted()
			if !ok {
				return bad("Invalid quoted string")
			}
			cmd.args = append(cmd.args, imapArg{kind: argQuoted, value: s})
		case '{':
			n, sync, ok := p.literalHeader()
			if !ok {
				return bad("Invalid literal")
			}
			lit, next, err := r.readLiteral(cmd.tag, n, sync, &budget)
			if err != nil {
				return err
			}
			cmd.args = append(cmd.args, imapArg{kind: argLiteral, value: lit})
			*p = cmdParser{s: next}
		default:
			a := p.astring()
			if a == "" {
				return bad("Invalid argument")
			}
			cmd.args = append(cmd.args, imapArg{kind: argAtom, value: a})
		}
		if len(cmd.args) > 64 {
			return bad("Too many arguments")
		}
	}
	if depth != 0 {
		return bad("Unbalanced parentheses")
	}
	return nil
}

// readLiteral reads a literal of n bytes and the line that continues the
// command after it.
func (r *imapReader) readLiteral(tag string, n int64, sync bool, budget *int) (string, []byte, error) {
	if n > int64(r.maxLiteral) || n > int64(*budget) {
		// A refused synchronising literal is never sent, so the command
		// simply ends here. A non-synchronising one is already on its way
		// and there is no safe way to find the end of it.
		return "", nil, &protoError{tag: tag, code: "TOOBIG", msg: "Literal too large", fatal: !sync}
	}
	if sync {
		if err := r.cont(); err != nil {
			return "", nil, err
		}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r.br, buf); err != nil {
		return "", nil, err
	}
	*budget -= int(n)
	next, err := r.readLine()
	if err != nil {
		var tl *errLineTooLong
		if errors.As(err, &tl) {
			return "", nil, &protoError{tag: tag, code: "TOOBIG", msg: "Line too long"}
		}
		if errors.Is(err, errDiscardLimit) {
			return "", nil, &protoError{tag: tag, code: "TOOBIG", msg: "Line too long", fatal: true}
		}
		return "", nil, err
	}
	*budget -= len(next)
	if *budget < 0 {
		return "", nil, &protoError{tag: tag, code: "TOOBIG", msg: "Command too long"}
	}
	return string(buf), next, nil
}

// cmdParser walks one line.
type cmdParser struct {
	s []byte
	i int
}

func (p *cmdParser) eol() bool  { return p.i >= len(p.s) }
func (p *cmdParser) peek() byte { return p.s[p.i] }

func (p *cmdParser) consume(c byte) bool {
	if p.eol() || p.s[p.i] != c {
		return false
	}
	p.i++
	return true
}

func (p *cmdParser) run(ok func(byte) bool) string {
	start := p.i
	for !p.eol() && ok(p.s[p.i]) {
		p.i++
	}
	return string(p.s[start:p.i])
}

func (p *cmdParser) tag() string {
	t := p.run(isTagChar)
	if len(t) > 64 {
		return ""
	}
	return t
}
func (p *cmdParser) atom() string    { return p.run(isAtomChar) }
func (p *cmdParser) astring() string { return p.run(isAStringChar) }

// quoted parses a quoted string; only \" and \\ may be escaped.
func (p *cmdParser) quoted() (string, bool) {
	p.i++ // opening quote
	var b strings.Builder
	for !p.eol() {
		c := p.s[p.i]
		p.i++
		switch c {
		case '"':
			return b.String(), true
		case '\\':
			if p.eol() || (p.s[p.i] != '"' && p.s[p.i] != '\\') {
				return "", false
			}
			b.WriteByte(p.s[p.i])
			p.i++
		case 0, '\r', '\n':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return "", false
}

// literalHeader parses "{n}" or "{n+}", which must end the line.
func (p *cmdParser) literalHeader() (n int64, sync, ok bool) {
	p.i++ // '{'
	digits := p.run(func(c byte) bool { return c >= '0' && c <= '9' })
	if digits == "" || len(digits) > 10 {
		return 0, false, false
	}
	sync = !p.consume('+')
	if !p.consume('}') || !p.eol() {
		return 0, false, false
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	return n, sync, err == nil
}

// RFC 9051 atom-specials are ( ) { SP CTL % * " \ ]; an astring may also
// contain ']', a tag anything an astring may except '+'.
func isAtomChar(c byte) bool {
	return c > ' ' && c < 0x7f && strings.IndexByte(`(){%*"\]`, c) < 0
}
func isAStringChar(c byte) bool { return isAtomChar(c) || c == ']' }
func isTagChar(c byte) bool     { return isAStringChar(c) && c != '+' }

// tagOf recovers a tag from the start of a line that could not be parsed,
// so the BAD can be tagged.
func tagOf(line []byte) string {
	p := cmdParser{s: line}
	t := p.tag()
	if t == "" || !p.consume(' ') {
		return ""
	}
	return t
}

// quoteIMAP renders s as an IMAP quoted string; ok is false if s cannot be
// quoted (CR, LF or NUL).
func quoteIMAP(s string) (string, bool) {
	if strings.ContainsAny(s, "\r\n\x00") {
		return "", false
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return fmt.Sprintf(`"%s"`, r.Replace(s)), true
}
