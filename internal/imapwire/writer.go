package imapwire

import (
	"bufio"
	"io"
	"strconv"
)

// Writer writes MUPDATE responses (the server side) or commands (the
// client side). Output is buffered; call Flush. It is not safe for
// concurrent use.
type Writer struct {
	bw    *bufio.Writer
	quote bool
	num   []byte
}

// NewWriter returns a writer to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, 16<<10)}
}

// Reset discards buffered output and writes to w from now on (after
// STARTTLS or COMPRESS).
func (w *Writer) Reset(dst io.Writer) { w.bw.Reset(dst) }

// SetQuoteStrings chooses how data strings (names, locations, ACLs) are
// written. false: always as {N+} literals, exactly as Cyrus does. true: as
// quoted strings whenever that is safe (7-bit, no CR, LF, '"', '\\' or
// NUL), and as literals otherwise. Cyrus 3.4.8, 3.6.5 and 3.8.3 clients
// reject {N+} from a server (cyrus-imapd #4932) and need true.
func (w *Writer) SetQuoteStrings(quote bool) { w.quote = quote }

// Flush writes buffered output to the underlying writer.
func (w *Writer) Flush() error { return w.bw.Flush() }

// WriteReply writes "tag kind text": kind is OK, NO, BAD or BYE. The text
// is always a string (quoted, or a literal if it cannot be quoted), because
// the Cyrus client parser (mupdate_scarf) rejects an atom there.
func (w *Writer) WriteReply(tag, kind, text string) error {
	w.bw.WriteString(tag)
	w.bw.WriteByte(' ')
	w.bw.WriteString(kind)
	w.bw.WriteByte(' ')
	w.writeText(text)
	_, err := w.bw.WriteString("\r\n")
	return err
}

// WriteData writes a data response "tag kind string...", for example
// "U01 MAILBOX name location acl".
func (w *Writer) WriteData(tag, kind string, args ...string) error {
	w.bw.WriteString(tag)
	w.bw.WriteByte(' ')
	w.bw.WriteString(kind)
	for _, a := range args {
		w.bw.WriteByte(' ')
		w.writeString(a)
	}
	_, err := w.bw.WriteString("\r\n")
	return err
}

// WriteCommand writes a client command: an Atom argument as is, a Quoted
// one quoted, a Literal as {N+}, the form Cyrus's client sends every
// string in (docs/mupdate.md §2).
func (w *Writer) WriteCommand(cmd Command) error {
	w.bw.WriteString(cmd.Tag)
	w.bw.WriteByte(' ')
	w.bw.WriteString(cmd.Name)
	for _, a := range cmd.Args {
		w.bw.WriteByte(' ')
		switch a.Kind {
		case Atom:
			w.bw.WriteString(a.Value)
		case Quoted:
			w.bw.WriteString(Quote(a.Value))
		default:
			w.writeLiteral(a.Value)
		}
	}
	_, err := w.bw.WriteString("\r\n")
	return err
}

// WriteLine writes a raw line and a CRLF: banner lines, SASL challenges,
// "+ go ahead".
func (w *Writer) WriteLine(line string) error {
	w.bw.WriteString(line)
	_, err := w.bw.WriteString("\r\n")
	return err
}

// writeString writes a data string in the configured form.
func (w *Writer) writeString(s string) {
	if w.quote && quoteSafe(s) {
		w.bw.WriteByte('"')
		w.bw.WriteString(s)
		w.bw.WriteByte('"')
		return
	}
	w.writeLiteral(s)
}

// writeText writes a reply text: quoted with backslash escapes when it is
// printable 7-bit, a literal otherwise.
func (w *Writer) writeText(s string) {
	if !textSafe(s) {
		w.writeLiteral(s)
		return
	}
	w.bw.WriteString(Quote(s))
}

func (w *Writer) writeLiteral(s string) {
	w.num = strconv.AppendInt(append(w.num[:0], '{'), int64(len(s)), 10)
	w.num = append(w.num, "+}\r\n"...)
	w.bw.Write(w.num)
	w.bw.WriteString(s)
}

// Quote returns s as a quoted string, escaping '"' and '\\'. It is meant for
// printable text (banner fields, reply texts); see textSafe.
func Quote(s string) string {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(append(b, '"'))
}

// quoteSafe reports whether s can be sent as a quoted string without
// escapes: every byte 7-bit, none of NUL, CR, LF, '"' or '\\'.
func quoteSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == 0, c == '\r', c == '\n', c == '"', c == '\\', c >= 0x80:
			return false
		}
	}
	return true
}

// textSafe reports whether s is printable 7-bit text (TAB allowed), which
// Quote can carry.
func textSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}
