package imapwire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ArgKind says how an argument was written on the wire.
type ArgKind uint8

const (
	// Atom is a bare word. Cyrus only accepts strings where RFC 3656 says
	// "string"; the session layer accepts atoms too (for example the "="
	// empty initial response Cyrus clients send).
	Atom ArgKind = iota + 1
	// Quoted is a "quoted string"; backslash escapes are already undone.
	Quoted
	// Literal is a {N} or {N+} literal.
	Literal
	// ListOpen and ListClose are the parentheses of a list, read only in
	// the IMAP syntax (the parameter list of ID).
	ListOpen
	ListClose
)

func (k ArgKind) String() string {
	switch k {
	case Atom:
		return "atom"
	case Quoted:
		return "quoted"
	case Literal:
		return "literal"
	case ListOpen:
		return "list open"
	case ListClose:
		return "list close"
	}
	return fmt.Sprintf("ArgKind(%d)", uint8(k))
}

// Arg is one argument of a command or response line.
type Arg struct {
	Kind  ArgKind
	Value string
}

// IsString reports whether the argument is a quoted string or a literal,
// the only forms RFC 3656 calls "string".
func (a Arg) IsString() bool { return a.Kind == Quoted || a.Kind == Literal }

// IsAString reports whether the argument is an IMAP astring: an atom, a
// quoted string or a literal, not a list parenthesis.
func (a Arg) IsAString() bool { return a.Kind == Atom || a.IsString() }

// Command is one parsed line: a command from a client, or a response from
// a server (both have the shape "tag SP word *(SP argument)").
//
// An empty line gives a Command with an empty Tag; a tag alone gives an
// empty Name. The session answers those with Cyrus's "Need command" and
// "Null command".
type Command struct {
	Tag  string
	Name string // as sent; compare case-insensitively
	Args []Arg
}

// Error is a protocol error found while reading a command. Text is meant
// for a BAD reply, tagged with Tag when the tag was read, untagged ("*")
// otherwise.
//
// When Fatal is false the whole offending command has been consumed and the
// next ReadCommand starts on the next command. When Fatal is true the
// reader cannot know where the next command starts (an over-long line that
// was not skipped, a {N+} literal above the limit) and the connection must
// be closed after the reply. TooBig says a size limit was hit; IMAP answers
// that with the TOOBIG response code.
type Error struct {
	Tag    string
	Text   string
	Fatal  bool
	TooBig bool
}

func (e *Error) Error() string {
	if e.Fatal {
		return "imapwire: " + e.Text + " (fatal)"
	}
	return "imapwire: " + e.Text
}

// Syntax selects the lexical rules where IMAP and MUPDATE peers differ.
type Syntax uint8

const (
	// MUPDATE reads the syntax as Cyrus's MUPDATE peers write it
	// (docs/mupdate.md §2): runs of spaces, any byte escaped by a
	// backslash, eight-bit atoms, no lists.
	MUPDATE Syntax = iota
	// IMAP reads RFC 9051's rules: one space between tokens, atoms of
	// ASTRING-CHAR, only \" and \\ escaped, '}' allowed in tags of at most
	// 64 bytes, and lists nested up to four deep.
	IMAP
)

// Reader reads commands (or MUPDATE responses) from a buffered stream, in
// the MUPDATE syntax unless SetSyntax says otherwise. It is not safe for
// concurrent use.
type Reader struct {
	br   *bufio.Reader
	lim  Limits
	imap bool
	cont func() error
	line []byte // scratch buffer for the current line
}

// NewReader returns a reader of br. Zero fields of lim take their
// DefaultLimits values.
func NewReader(br *bufio.Reader, lim Limits) *Reader {
	return &Reader{br: br, lim: lim.withDefaults()}
}

// SetLimits replaces the limits for the following commands, for example
// wider ones once the peer has authenticated.
func (r *Reader) SetLimits(lim Limits) { r.lim = lim.withDefaults() }

// SetSyntax selects the lexical rules for the following commands.
func (r *Reader) SetSyntax(s Syntax) { r.imap = s == IMAP }

// cursor returns a cursor over line in the reader's syntax.
func (r *Reader) cursor(line []byte) cursor { return cursor{b: line, imap: r.imap} }

// Limits returns the limits in force.
func (r *Reader) Limits() Limits { return r.lim }

// SetContinuation sets the function called before the contents of a {N}
// synchronizing literal are read; a server sends "+ go ahead" there. With no
// function set, {N} literals are read like {N+} ones (the client side: a
// server never waits for a continuation).
func (r *Reader) SetContinuation(fn func() error) { r.cont = fn }

// Buffered returns the number of bytes already read from the underlying
// stream but not yet consumed. STARTTLS discards them, as Cyrus does.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// maxScratch is the line buffer capacity kept between commands; a larger
// buffer, left by one long line, is released so that idle connections stay
// small.
const maxScratch = 16 << 10

// begin starts a command or response: it releases a scratch buffer grown
// by a long one and returns the byte budget.
func (r *Reader) begin() int {
	if cap(r.line) > maxScratch {
		r.line = nil
	}
	return r.lim.MaxCommandSize
}

// ReadCommand reads one command. It returns an *Error for protocol errors
// and the underlying error (io.EOF, io.ErrUnexpectedEOF, a timeout) when
// the stream fails.
func (r *Reader) ReadCommand() (*Command, error) {
	budget := r.begin()
	line, err := r.readLine(&budget)
	if err != nil {
		return nil, r.tagSkipped(err)
	}
	p := r.cursor(line)
	if p.allSpace() {
		return &Command{}, nil
	}
	cmd := &Command{}
	tag, ok := p.tag()
	if !ok {
		return nil, r.fail("", "Invalid tag", line, &budget)
	}
	cmd.Tag = tag
	if !p.space() || (p.eol() && !p.imap) { // IMAP needs a name after "tag SP"
		return cmd, nil
	}
	name := p.atom()
	if name == "" {
		return nil, r.fail(tag, "Unrecognized command", line, &budget)
	}
	cmd.Name = name
	if cmd.Args, err = r.readArgs(tag, p, &budget); err != nil {
		return nil, err
	}
	return cmd, nil
}

// readArgs reads the arguments that follow a command name or response
// keyword at p, with the literals and continuation lines they span.
func (r *Reader) readArgs(tag string, p cursor, budget *int) ([]Arg, error) {
	var args []Arg
	depth := 0 // lists open (IMAP syntax only)
	for {
		switch {
		case p.eol() && depth > 0:
			return nil, r.fail(tag, "Unbalanced parentheses", p.b, budget)
		case p.eol():
			return args, nil
		case depth > 0 && p.peek() == ')':
			p.i++
			depth--
			args = append(args, Arg{Kind: ListClose})
			continue
		case len(args) > 0 && args[len(args)-1].Kind == ListOpen:
			// A list's first element follows "(" directly.
		case !p.space():
			return nil, r.fail(tag, "Extra arguments", p.b, budget)
		case p.eol() && !p.imap: // trailing spaces are tolerated
			return args, nil
		}
		if len(args) >= r.lim.MaxArgs {
			return nil, r.fail(tag, "Too many arguments", p.b, budget)
		}
		if p.imap && p.peek() == '(' && depth < maxListDepth {
			p.i++
			depth++
			args = append(args, Arg{Kind: ListOpen})
			continue
		}
		a, err := r.readArg(tag, &p, budget)
		if err != nil {
			return nil, err
		}
		args = append(args, a)
	}
}

// maxListDepth bounds the nesting of IMAP lists.
const maxListDepth = 4

// readArg reads the quoted string, literal or atom at p. After a literal,
// p is moved to the line that continues the command.
func (r *Reader) readArg(tag string, p *cursor, budget *int) (Arg, error) {
	switch p.peek() {
	case '"':
		s, ok := p.quoted()
		if !ok {
			return Arg{}, r.fail(tag, "Invalid quoted string", p.b, budget)
		}
		return Arg{Kind: Quoted, Value: s}, nil
	case '{':
		n, sync, ok := p.literalHeader()
		if !ok || !p.eol() {
			return Arg{}, r.fail(tag, "Invalid literal", p.b, budget)
		}
		s, hasNUL, err := r.literal(tag, n, sync, budget)
		if err != nil {
			return Arg{}, err
		}
		// The command continues on the line after the literal.
		line, err := r.readLine(budget)
		if err != nil {
			return Arg{}, tagged(err, tag)
		}
		if hasNUL { // Cyrus rejects NUL in literals too; IMAP's CHAR8 excludes it
			return Arg{}, r.fail(tag, "NUL byte in literal", line, budget)
		}
		*p = r.cursor(line)
		return Arg{Kind: Literal, Value: s}, nil
	}
	s := p.atom()
	if s == "" {
		return Arg{}, r.fail(tag, "Invalid characters in command", p.b, budget)
	}
	return Arg{Kind: Atom, Value: s}, nil
}

// ReadLine reads one raw line, without its line end, for the SASL exchange
// (bare base64 lines, "*" to cancel). The result is a copy.
func (r *Reader) ReadLine() ([]byte, error) {
	budget := r.lim.MaxLineLength + 2
	line, err := r.readLine(&budget)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(line), nil
}

// readLine reads up to and including the next LF into the scratch buffer
// and returns the line without CRLF or bare LF. It never holds more than
// MaxLineLength+2 bytes, whatever the peer sends.
func (r *Reader) readLine(budget *int) ([]byte, error) {
	r.line = r.line[:0]
	for {
		frag, err := r.br.ReadSlice('\n')
		if room := r.lim.MaxLineLength + 2 - len(r.line); len(frag) > room {
			r.line = append(r.line, frag[:room]...) // the start, for tagSkipped
			return nil, r.skipLong(len(r.line)+len(frag)-room, err == nil)
		}
		r.line = append(r.line, frag...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && len(r.line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	*budget -= len(r.line)
	n := len(r.line) - 1
	if n > 0 && r.line[n-1] == '\r' {
		n--
	}
	if n > r.lim.MaxLineLength {
		return nil, r.tooLong(true)
	}
	if *budget < 0 {
		return nil, &Error{Text: "Command too long", Fatal: true, TooBig: true}
	}
	return r.line[:n], nil
}

// skipLong handles a line longer than MaxLineLength of which seen bytes
// were read (ended: through its LF). Without MaxDiscard that is fatal;
// with it, up to MaxDiscard bytes are skipped to find the line's end, so
// that the next line can be read.
func (r *Reader) skipLong(seen int, ended bool) error {
	for !ended && seen <= r.lim.MaxDiscard {
		frag, err := r.br.ReadSlice('\n')
		seen += len(frag)
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
		ended = err == nil
	}
	return r.tooLong(ended)
}

// tooLong is the error for an over-long line; skipped says the whole line
// was consumed.
func (r *Reader) tooLong(skipped bool) error {
	return &Error{Text: "Line too long", Fatal: !skipped || r.lim.MaxDiscard == 0, TooBig: true}
}

// tagSkipped gives the error for a skipped over-long first line the tag
// the line began with, so that the BAD answering it is tagged.
func (r *Reader) tagSkipped(err error) error {
	var we *Error
	if errors.As(err, &we) && !we.Fatal {
		p := r.cursor(r.line)
		if tag, ok := p.tag(); ok && p.space() {
			we.Tag = tag
		}
	}
	return err
}

// literal reads the contents of a literal of n bytes announced by the
// current line. The size is checked against the limits before anything is
// read, and the buffer grows with the bytes that arrive, never to the
// announced size up front.
func (r *Reader) literal(tag string, n uint64, sync bool, budget *int) (string, bool, error) {
	text := ""
	switch {
	case n > uint64(r.lim.MaxLiteralSize):
		text = "Literal too large"
	case n > uint64(*budget):
		text = "Command too long"
	}
	if text != "" {
		// A client that sent {N} waits for "+ go ahead" and abandons the
		// command on BAD: the stream stays in sync. The bytes of a {N+}
		// literal are already on their way: give up on this connection.
		return "", false, &Error{Tag: tag, Text: text, Fatal: !sync, TooBig: true}
	}
	if sync && r.cont != nil {
		if err := r.cont(); err != nil {
			return "", false, err
		}
	}
	*budget -= int(n)
	var buf bytes.Buffer
	got, err := buf.ReadFrom(io.LimitReader(r.br, int64(n)))
	if err != nil {
		return "", false, err
	}
	if uint64(got) < n {
		return "", false, io.ErrUnexpectedEOF
	}
	b := buf.Bytes()
	return string(b), bytes.IndexByte(b, 0) >= 0, nil
}

// fail consumes what is left of a command whose line could not be parsed
// and returns the error to report. If the bad line ends with a {N+}
// literal, the literal and the lines after it belong to the same command
// and are skipped too; a {N} literal is not, because its sender waits for a
// continuation it will never get.
func (r *Reader) fail(tag, text string, line []byte, budget *int) error {
	for {
		n, sync, ok := TrailingLiteral(line)
		if !ok || sync {
			return &Error{Tag: tag, Text: text}
		}
		if n > uint64(r.lim.MaxLiteralSize) || n > uint64(*budget) {
			return &Error{Tag: tag, Text: text, Fatal: true}
		}
		*budget -= int(n)
		if _, err := io.CopyN(io.Discard, r.br, int64(n)); err != nil {
			return err
		}
		var err error
		if line, err = r.readLine(budget); err != nil {
			return tagged(err, tag)
		}
	}
}

// tagged sets the tag of a wire error that was found without it.
func tagged(err error, tag string) error {
	var we *Error
	if errors.As(err, &we) && we.Tag == "" {
		we.Tag = tag
	}
	return err
}

// TrailingLiteral reports whether line (without its line end) ends with a
// literal header, and the literal's size; a size too long for a uint64 is
// reported as the largest one.
func TrailingLiteral(line []byte) (n uint64, sync, ok bool) {
	if len(line) == 0 || line[len(line)-1] != '}' {
		return 0, false, false
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false, false
	}
	p := cursor{b: line, i: i}
	n, sync, ok = p.literalHeader()
	return n, sync, ok && p.eol()
}
