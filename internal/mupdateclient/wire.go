package mupdateclient

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Response is one server response, with every literal and quoted string
// decoded. A response may span several physical lines when it carries
// literals ({N+} CRLF bytes).
type Response struct {
	// Tag is the command tag the response belongs to, or "*" for untagged
	// responses (the banner, BYE).
	Tag string
	// Kind is the response keyword, upper-cased: OK, NO, BAD, BYE, MAILBOX,
	// RESERVE, DELETE, or a banner capability such as AUTH.
	Kind string
	// Args are the decoded arguments. For OK/NO/BAD/BYE the single argument
	// is the response text, quoted or not.
	Args []string
}

// IsStatus reports whether r completes a command (OK, NO or BAD).
func (r Response) IsStatus() bool {
	return r.Kind == "OK" || r.Kind == "NO" || r.Kind == "BAD"
}

// Text returns the human-readable text of a status response.
func (r Response) Text() string {
	if len(r.Args) == 0 {
		return ""
	}
	return r.Args[0]
}

// Entry returns the mailbox carried by a MAILBOX or RESERVE response.
func (r Response) Entry() (Entry, error) {
	switch {
	case r.Kind == "MAILBOX" && len(r.Args) == 3:
		return Entry{Name: r.Args[0], Location: r.Args[1], ACL: r.Args[2]}, nil
	case r.Kind == "RESERVE" && len(r.Args) == 2:
		return Entry{Name: r.Args[0], Location: r.Args[1], Reserved: true}, nil
	}
	return Entry{}, fmt.Errorf("%w: %s with %d arguments is not a mailbox", ErrProtocol, r.Kind, len(r.Args))
}

// ErrProtocol marks a response the client could not parse. The connection is
// unusable afterwards.
var ErrProtocol = errors.New("mupdate: protocol error")

// respReader decodes responses from a buffered stream. Its limits keep a
// misbehaving server from making the client allocate without bound.
type respReader struct {
	br         *bufio.Reader
	maxLine    int
	maxLiteral int
}

// readLine returns one physical line without its CRLF (a bare LF is accepted,
// as Cyrus does).
func (r *respReader) readLine() ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > r.maxLine {
			return nil, fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, r.maxLine)
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r")), nil
}

// read decodes the next response.
func (r *respReader) read() (Response, error) {
	line, err := r.readLine()
	if err != nil {
		return Response{}, err
	}
	tag, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(tag) == 0 {
		return Response{}, fmt.Errorf("%w: response %q has no tag and keyword", ErrProtocol, truncate(line))
	}
	kind, rest, _ := bytes.Cut(rest, []byte(" "))
	resp := Response{Tag: string(tag), Kind: strings.ToUpper(string(kind))}
	if len(kind) == 0 {
		return Response{}, fmt.Errorf("%w: response %q has no keyword", ErrProtocol, truncate(line))
	}
	if resp.Tag == "*" && resp.Kind != "BYE" && resp.Kind != "OK" && resp.Kind != "NO" && resp.Kind != "BAD" {
		// Banner capability lines: keep the raw parameters, as Cyrus does.
		if len(rest) > 0 {
			resp.Args = []string{string(rest)}
		}
		return resp, nil
	}
	resp.Args, err = r.args(rest, resp.IsStatus() || resp.Kind == "BYE")
	return resp, err
}

// args decodes the arguments that follow the keyword. For status responses
// an unquoted text (Cyrus sends some) is taken verbatim up to the line end.
func (r *respReader) args(line []byte, status bool) ([]string, error) {
	var out []string
	for len(line) > 0 {
		if line[0] != ' ' && len(out) > 0 {
			return nil, fmt.Errorf("%w: missing space before %q", ErrProtocol, truncate(line))
		}
		line = bytes.TrimLeft(line, " ")
		if len(line) == 0 {
			break
		}
		switch {
		case line[0] == '"':
			s, n, err := unquote(line)
			if err != nil {
				if status {
					return append(out, string(line)), nil
				}
				return nil, err
			}
			out = append(out, s)
			line = line[n:]
		case line[0] == '{' && literalAtEnd(line) >= 0:
			n := literalAtEnd(line)
			if n > r.maxLiteral {
				return nil, fmt.Errorf("%w: literal of %d bytes exceeds limit %d", ErrProtocol, n, r.maxLiteral)
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(r.br, buf); err != nil {
				return nil, fmt.Errorf("mupdate: reading %d-byte literal: %w", n, err)
			}
			out = append(out, string(buf))
			next, err := r.readLine()
			if err != nil {
				return nil, err
			}
			line = next
		case status:
			return append(out, string(line)), nil
		default:
			atom, rest, _ := bytes.Cut(line, []byte(" "))
			out = append(out, string(atom))
			if len(rest) > 0 {
				rest = append([]byte(" "), rest...)
			}
			line = rest
		}
	}
	return out, nil
}

// literalAtEnd returns N when line is exactly "{N}" or "{N+}" (a literal
// announcement ends the physical line), else -1.
func literalAtEnd(line []byte) int {
	if len(line) < 3 || line[0] != '{' || line[len(line)-1] != '}' {
		return -1
	}
	digits := bytes.TrimSuffix(line[1:len(line)-1], []byte("+"))
	if len(digits) == 0 || len(digits) > 9 {
		return -1
	}
	n, err := strconv.Atoi(string(digits))
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// unquote decodes a quoted string at the start of b, returning it and the
// number of bytes consumed. Backslash escapes the next byte.
func unquote(b []byte) (string, int, error) {
	var sb strings.Builder
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			if i+1 >= len(b) {
				return "", 0, fmt.Errorf("%w: dangling escape in quoted string", ErrProtocol)
			}
			i++
			sb.WriteByte(b[i])
		case '"':
			return sb.String(), i + 1, nil
		default:
			sb.WriteByte(b[i])
		}
	}
	return "", 0, fmt.Errorf("%w: unterminated quoted string %q", ErrProtocol, truncate(b))
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// appendCommand encodes "tag CMD" followed by each argument as a LITERAL+
// ({N+} CRLF bytes), exactly as Cyrus's own client sends them.
func appendCommand(dst []byte, tag, cmd string, args ...string) []byte {
	dst = append(dst, tag...)
	dst = append(dst, ' ')
	dst = append(dst, cmd...)
	for _, a := range args {
		dst = append(dst, " {"...)
		dst = strconv.AppendInt(dst, int64(len(a)), 10)
		dst = append(dst, "+}\r\n"...)
		dst = append(dst, a...)
	}
	return append(dst, "\r\n"...)
}
