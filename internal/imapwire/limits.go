// Package imapwire reads and writes IMAP's syntax (RFC 9051 §4): tags,
// atoms, quoted strings with backslash escapes, {N} synchronizing and {N+}
// non-synchronizing literals, lists. Two protocols use it: MUPDATE (RFC
// 3656), which borrows IMAP's syntax, on both sides (the server reads
// commands and writes responses, the client writes commands and reads
// responses), and the gateway's IMAP sessions, which read commands before
// login and the commands they answer themselves after it. Where Cyrus's
// MUPDATE peers are looser than RFC 9051 (runs of spaces, any escaped byte,
// eight-bit atoms) the reader follows the Syntax it is given
// (docs/mupdate.md §2 describes the MUPDATE one). Response and Writer are
// MUPDATE's alone.
//
// The reader is written for hostile input. Every line, literal and command
// is bounded by Limits; an announced literal size is checked before a single
// byte of it is read and its buffer grows only with the bytes that actually
// arrive; errors say whether the stream can be resynchronised (the rest of
// the command was consumed) or must be closed.
//
// The package knows nothing about command semantics: package mupdatecompat
// (the MUPDATE server) decides what each command means,
// internal/mupdateclient what each response means, package gateway what
// an IMAP command means.
package imapwire

// Limits bounds what one peer can make the reader hold in memory.
type Limits struct {
	// MaxLineLength is the longest line, without its line end and without
	// literal contents, that is accepted. A longer line cannot be parsed
	// safely and closes the connection, unless MaxDiscard lets it be
	// skipped. Cyrus SASL lines reach 21848 bytes.
	MaxLineLength int
	// MaxLiteralSize is the largest single literal. A larger {N} literal is
	// refused before the client sends it; a larger {N+} literal closes the
	// connection, because its bytes are already on the way.
	MaxLiteralSize int
	// MaxCommandSize bounds one command: the sum of its lines and literals.
	MaxCommandSize int
	// MaxArgs bounds the number of arguments of one command.
	MaxArgs int
	// MaxDiscard, when set, lets an over-long line be skipped rather than
	// close the connection: its end is searched for while fewer than
	// MaxDiscard bytes of it have been read, and if found the error is not
	// fatal. MUPDATE leaves it 0.
	MaxDiscard int
}

// DefaultLimits returns limits far above anything Cyrus sends (mailbox
// names are at most a few hundred bytes, ACLs a few KiB) while keeping the
// per-connection worst case around one MiB.
func DefaultLimits() Limits {
	return Limits{
		MaxLineLength:  64 << 10,
		MaxLiteralSize: 256 << 10,
		MaxCommandSize: 1 << 20,
		MaxArgs:        64,
	}
}

// withDefaults fills zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxLineLength <= 0 {
		l.MaxLineLength = d.MaxLineLength
	}
	if l.MaxLiteralSize <= 0 {
		l.MaxLiteralSize = d.MaxLiteralSize
	}
	if l.MaxCommandSize <= 0 {
		l.MaxCommandSize = d.MaxCommandSize
	}
	if l.MaxArgs <= 0 {
		l.MaxArgs = d.MaxArgs
	}
	return l
}
