package imapwire

import (
	"errors"
	"fmt"
	"strings"
)

// Kind is the keyword of a server response, upper-cased.
type Kind string

// The responses a MUPDATE server sends (docs/mupdate.md §3, §5–§7). Other
// untagged keywords are banner capabilities (AUTH, STARTTLS, COMPRESS,
// PARTIAL-UPDATE).
const (
	KindMailbox Kind = "MAILBOX"
	KindReserve Kind = "RESERVE"
	KindDelete  Kind = "DELETE"
	KindOK      Kind = "OK"
	KindNO      Kind = "NO"
	KindBAD     Kind = "BAD"
	KindBYE     Kind = "BYE"
)

// ErrProtocol is what every *Error unwraps to: the peer broke the syntax.
// On the client side the connection is unusable afterwards.
var ErrProtocol = errors.New("mupdate: protocol error")

// Unwrap makes errors.Is(err, ErrProtocol) true for every wire error.
func (e *Error) Unwrap() error { return ErrProtocol }

// Response is one decoded server response; literals and quoted strings are
// already decoded.
type Response struct {
	// Tag is the tag of the command answered, or "*" for the banner and BYE.
	Tag  string
	Kind Kind
	// Name, Location and ACL are the strings of a data response: MAILBOX
	// carries all three, RESERVE Name and Location, DELETE Name.
	Name, Location, ACL string
	// Text is the text of OK, NO, BAD and BYE, or the parameters of a
	// banner capability line as sent (`"PLAIN" "LOGIN"` for AUTH).
	Text string
}

// IsStatus reports whether r completes a command (OK, NO or BAD).
func (r Response) IsStatus() bool {
	return r.Kind == KindOK || r.Kind == KindNO || r.Kind == KindBAD
}

// ReadResponse reads one server response (the client side). Every error,
// an *Error for bad syntax or the stream's own, leaves the stream at an
// unknown position.
func (r *Reader) ReadResponse() (Response, error) {
	budget := r.begin()
	line, err := r.readLine(&budget)
	if err != nil {
		return Response{}, err
	}
	p := cursor{b: line}
	tag, ok := "*", len(line) > 0 && line[0] == '*'
	if ok {
		p.i++
	} else {
		tag, ok = p.tag()
	}
	if !ok || !p.skipSpaces() {
		return Response{}, &Error{Text: fmt.Sprintf("Response %.80q has no tag and keyword", line), Fatal: true}
	}
	resp := Response{Tag: tag, Kind: Kind(strings.ToUpper(p.atom()))}
	if resp.Kind == "" {
		return Response{}, &Error{Tag: tag, Text: fmt.Sprintf("Response %.80q has no keyword", line), Fatal: true}
	}
	text := p
	text.skipSpaces()
	switch resp.Kind {
	case KindMailbox, KindReserve, KindDelete:
		args, err := r.readArgs(tag, p, &budget)
		if err != nil {
			return Response{}, err
		}
		fields := []*string{&resp.Name, &resp.Location, &resp.ACL}
		switch resp.Kind {
		case KindReserve:
			fields = fields[:2]
		case KindDelete:
			fields = fields[:1]
		}
		if len(args) != len(fields) {
			return Response{}, &Error{Tag: tag, Text: fmt.Sprintf("%s with %d arguments", resp.Kind, len(args)), Fatal: true}
		}
		for i, f := range fields {
			*f = args[i].Value
		}
	case KindOK, KindNO, KindBAD, KindBYE:
		// The text should be a string (docs/mupdate.md §2), but Cyrus sends
		// some unquoted ("NO Client canceled authentication") and the
		// banner's "* OK MUPDATE ..." starts with an atom: those are kept
		// as sent.
		if !text.startsString() {
			resp.Text = string(text.b[text.i:])
			break
		}
		args, err := r.readArgs(tag, p, &budget)
		if err != nil {
			return Response{}, err
		}
		resp.Text = args[0].Value
	default:
		resp.Text = string(text.b[text.i:])
	}
	return resp, nil
}

// startsString reports whether a quoted string or a literal header that
// ends the line starts at p.
func (p cursor) startsString() bool {
	if p.eol() {
		return false
	}
	if p.peek() == '"' {
		_, ok := p.quoted()
		return ok
	}
	_, _, ok := p.literalHeader()
	return ok && p.eol()
}
