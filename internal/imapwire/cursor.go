package imapwire

import "strings"

// cursor tokenizes one line (without its line end), in the IMAP syntax
// when imap is set and in the MUPDATE syntax otherwise.
type cursor struct {
	b    []byte
	i    int
	imap bool
}

func (p *cursor) eol() bool { return p.i >= len(p.b) }

// peek returns the byte at the cursor, 0 at the end of the line.
func (p *cursor) peek() byte {
	if p.eol() {
		return 0
	}
	return p.b[p.i]
}

func (p *cursor) allSpace() bool {
	for _, c := range p.b[p.i:] {
		if c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

// skipSpaces skips one or more SP and reports whether there was any.
func (p *cursor) skipSpaces() bool {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] == ' ' {
		p.i++
	}
	return p.i > start
}

// space skips the separator between tokens, one SP in IMAP and a run of
// them in MUPDATE (Cyrus tolerates runs), and reports whether there was one.
func (p *cursor) space() bool {
	if !p.imap {
		return p.skipSpaces()
	}
	if p.peek() != ' ' {
		return false
	}
	p.i++
	return true
}

// maxIMAPTag bounds an IMAP tag, which every response to the command echoes.
const maxIMAPTag = 64

// tag reads the tag: printable ASCII up to the first SP. Characters that
// would make the tag ambiguous in a response ("*", "+", quotes, the literal
// brace, parentheses, backslash, "%") are refused, and in MUPDATE '}' too.
func (p *cursor) tag() (string, bool) {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] != ' ' {
		if !p.isTagChar(p.b[p.i]) {
			return "", false
		}
		p.i++
	}
	if p.i == start || (p.imap && p.i-start > maxIMAPTag) {
		return "", false
	}
	return string(p.b[start:p.i]), true
}

func (p *cursor) isTagChar(c byte) bool {
	switch c {
	case '*', '+', '"', '{', '(', ')', '\\', '%':
		return false
	case '}':
		return p.imap
	}
	return c > ' ' && c < 0x7f
}

// isAtomChar in IMAP accepts ASTRING-CHAR (RFC 9051 §9): 7-bit, none of
// the atom-specials but ']'. In MUPDATE it accepts every byte but SP,
// controls, quotes, parentheses and the literal brace, eight-bit bytes
// too: Cyrus treats names as opaque bytes, and so does the directory.
func (p *cursor) isAtomChar(c byte) bool {
	if p.imap {
		return c > ' ' && c < 0x7f && strings.IndexByte(`(){%*"\`, c) < 0
	}
	switch c {
	case '"', '(', ')', '{', 0x7f:
		return false
	}
	return c > ' '
}

// atom reads a run of atom characters; "" when there is none.
func (p *cursor) atom() string {
	start := p.i
	for p.i < len(p.b) && p.isAtomChar(p.b[p.i]) {
		p.i++
	}
	return string(p.b[start:p.i])
}

// quoted reads a quoted string starting at the opening quote. A backslash
// takes the next byte literally, as Cyrus's parser does; in IMAP only '"'
// and '\\' may follow it. NUL, CR and LF are refused.
func (p *cursor) quoted() (string, bool) {
	p.i++ // opening quote
	var out []byte
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch c {
		case '"':
			if out == nil {
				s := string(p.b[start:p.i])
				p.i++
				return s, true
			}
			p.i++
			return string(out), true
		case '\\':
			if out == nil {
				out = append(make([]byte, 0, len(p.b)-start), p.b[start:p.i]...)
			}
			p.i++
			if p.i >= len(p.b) {
				return "", false
			}
			c = p.b[p.i]
			if c == 0 || c == '\r' || (p.imap && c != '"' && c != '\\') {
				return "", false
			}
			out = append(out, c)
		case 0, '\r', '\n':
			return "", false
		default:
			if out != nil {
				out = append(out, c)
			}
		}
		p.i++
	}
	return "", false
}

// maxDigits bounds a literal length: 19 decimal digits always fit in a
// uint64, and anything that long is far above every limit anyway.
const maxDigits = 19

// literalHeader reads "{" digits ["+"] "}" at the cursor. A length with
// more digits than fit is reported as the largest value, so that the caller
// refuses it as too large.
func (p *cursor) literalHeader() (n uint64, sync, ok bool) {
	if p.eol() || p.b[p.i] != '{' {
		return 0, false, false
	}
	p.i++
	digits := 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		if digits < maxDigits {
			n = n*10 + uint64(p.b[p.i]-'0')
		} else {
			n = ^uint64(0)
		}
		digits++
		p.i++
	}
	if digits == 0 || p.eol() {
		return 0, false, false
	}
	sync = true
	if p.b[p.i] == '+' {
		sync = false
		p.i++
	}
	if p.eol() || p.b[p.i] != '}' {
		return 0, false, false
	}
	p.i++
	return n, sync, true
}
