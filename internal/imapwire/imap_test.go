package imapwire

import (
	"bufio"
	"errors"
	"reflect"
	"strings"
	"testing"
)

var (
	open  = Arg{Kind: ListOpen}
	close = Arg{Kind: ListClose}
)

func TestIMAPSyntaxReadsAStringsAndLists(t *testing.T) {
	tests := []struct {
		name, input string
		want        *Command
	}{
		{"atom and quoted", "a LOGIN alice \"pw\"\r\n", cmd("a", "LOGIN", atom("alice"), quoted("pw"))},
		{"astring may hold ']', a tag '}'", "a} LOGIN al]ice x\r\n", cmd("a}", "LOGIN", atom("al]ice"), atom("x"))},
		{"escaped quote and backslash", `a LOGIN "a\"b\\c" x` + "\r\n", cmd("a", "LOGIN", quoted(`a"b\c`), atom("x"))},
		{"ID parameter list", "a ID (\"name\" \"mutt\" \"os\" NIL)\r\n",
			cmd("a", "ID", open, quoted("name"), quoted("mutt"), quoted("os"), atom("NIL"), close)},
		{"empty list", "a ID ()\r\n", cmd("a", "ID", open, close)},
		{"nested lists", "a X ((b) c)\r\n", cmd("a", "X", open, open, atom("b"), close, atom("c"), close)},
		{"literal inside a list", "a ID (\"name\" {4}\r\nmutt)\r\n", cmd("a", "ID", open, quoted("name"), literal("mutt"), close)},
		{"tag alone", "abc\r\n", &Command{Tag: "abc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, _ := readAllIn(t, IMAP, tt.input, DefaultLimits())
			if len(steps) != 1 || steps[0].err != nil || !reflect.DeepEqual(steps[0].cmd, tt.want) {
				t.Fatalf("steps = %+v, want %+v", steps, tt.want)
			}
		})
	}
}

// TestSyntaxDecidesWhatIsRefused shows each rule where IMAP and MUPDATE
// differ: the same input is read in both, and the refusals are non-fatal
// (the NOOP after them is read).
func TestSyntaxDecidesWhatIsRefused(t *testing.T) {
	tests := []struct {
		name, input      string
		imapErr, mupdErr string // "" when the command is accepted
		imapTag, mupdTag string // tag of the error
	}{
		{"two spaces between arguments", "a LOGIN  x y\r\n", "Invalid characters in command", "", "a", ""},
		{"trailing space", "a NOOP \r\n", "Invalid characters in command", "", "a", ""},
		{"tag and space", "a \r\n", "Unrecognized command", "", "a", ""},
		{"escaped other byte", `a LOGIN "a\lice" x` + "\r\n", "Invalid quoted string", "", "a", ""},
		{"eight-bit atom", "a LOGIN \xc3\xa9 x\r\n", "Invalid characters in command", "", "a", ""},
		{"list wildcard in atom", "a LOGIN a%b x\r\n", "Extra arguments", "", "a", ""},
		{"'}' in tag", "a} NOOP\r\n", "", "Invalid tag", "", ""},
		{"tag of 65 bytes", strings.Repeat("t", 65) + " NOOP\r\n", "Invalid tag", "", "", ""},
		{"list", "a ID (x)\r\n", "", "Invalid characters in command", "", "a"},
		{"lists nested five deep", "a ID (((((x)))))\r\n", "Invalid characters in command", "Invalid characters in command", "a", "a"},
		{"unbalanced list", "a ID (\"x\"\r\n", "Unbalanced parentheses", "Invalid characters in command", "a", "a"},
		{"stray close", "a ID )\r\n", "Invalid characters in command", "Invalid characters in command", "a", "a"},
		{"no space after list", "a ID ()x\r\n", "Extra arguments", "Invalid characters in command", "a", "a"},
	}
	for _, tt := range tests {
		for _, c := range []struct {
			syntax    Syntax
			text, tag string
		}{{IMAP, tt.imapErr, tt.imapTag}, {MUPDATE, tt.mupdErr, tt.mupdTag}} {
			t.Run(tt.name, func(t *testing.T) {
				steps, _ := readAllIn(t, c.syntax, tt.input+"N9 NOOP\r\n", DefaultLimits())
				if len(steps) != 2 || !reflect.DeepEqual(steps[1].cmd, cmd("N9", "NOOP")) {
					t.Fatalf("syntax %d: steps = %+v, want the NOOP second", c.syntax, steps)
				}
				var we *Error
				switch {
				case c.text == "" && steps[0].err != nil:
					t.Errorf("syntax %d: %v, want the command accepted", c.syntax, steps[0].err)
				case c.text == "":
				case !errors.As(steps[0].err, &we) || we.Text != c.text || we.Tag != c.tag || we.Fatal:
					t.Errorf("syntax %d: got %+v, want non-fatal %q tagged %q", c.syntax, steps[0], c.text, c.tag)
				}
			})
		}
	}
}

// TestOverlongLineIsSkippedWithinMaxDiscard proves that with MaxDiscard a
// line over MaxLineLength costs a non-fatal TOOBIG error, tagged with the
// command's tag, and the next command is read; past MaxDiscard, or without
// it, the error is fatal.
func TestOverlongLineIsSkippedWithinMaxDiscard(t *testing.T) {
	lim := Limits{MaxLineLength: 100, MaxDiscard: 1000}
	long := strings.Repeat("x", 500)
	tests := []struct {
		name, input string
		lim         Limits
		tag         string
		fatal       bool
	}{
		{"first line keeps its tag", "tag1 LOGIN " + long + "\r\n", lim, "tag1", false},
		{"line after a literal takes the command's tag", "a LOGIN {1}\r\nx " + long + "\r\n", lim, "a", false},
		{"line of MaxLineLength+1 bytes", "a LOGIN " + long[:93] + "\n", lim, "a", false},
		{"beyond MaxDiscard and the buffer", "tag1 LOGIN " + strings.Repeat(long, 20) + "\r\n", lim, "", true},
		{"without MaxDiscard", "tag1 LOGIN " + long + "\r\n", Limits{MaxLineLength: 100}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, _ := readAllIn(t, IMAP, tt.input+"N9 NOOP\r\n", tt.lim)
			var we *Error
			if len(steps) == 0 || !errors.As(steps[0].err, &we) {
				t.Fatalf("steps = %+v, want a wire error first", steps)
			}
			if we.Text != "Line too long" || !we.TooBig || we.Tag != tt.tag || we.Fatal != tt.fatal {
				t.Errorf("error = %+v, want TOOBIG Line too long tagged %q fatal %v", we, tt.tag, tt.fatal)
			}
			if !tt.fatal && (len(steps) != 2 || !reflect.DeepEqual(steps[1].cmd, cmd("N9", "NOOP"))) {
				t.Errorf("steps = %+v, want the NOOP after the skipped line", steps)
			}
		})
	}
	r := NewReader(bufio.NewReader(strings.NewReader(long+"\r\nAGFi\r\n")), lim)
	if _, err := r.ReadLine(); !isWireErr(err) || err.(*Error).Fatal {
		t.Fatalf("ReadLine of an over-long line: %v, want a non-fatal wire error", err)
	}
	if line, err := r.ReadLine(); err != nil || string(line) != "AGFi" {
		t.Fatalf("ReadLine after it = %q, %v", line, err)
	}
}

func TestOnlySizeErrorsAreTooBig(t *testing.T) {
	lim := Limits{MaxLineLength: 100, MaxLiteralSize: 10, MaxCommandSize: 40}
	tests := []struct {
		name, input string
		tooBig      bool
	}{
		{"literal over MaxLiteralSize", "a LOGIN {11}\r\n", true},
		{"literal over the command budget", "a LOGIN {10+}\r\n0123456789 {10}\r\n", true},
		{"line over MaxLineLength", "a " + strings.Repeat("x", 200) + "\r\n", true},
		{"bad literal header", "a LOGIN {1x}\r\n", false},
		{"bad quoted string", "a LOGIN \"x\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, _ := readAllIn(t, IMAP, tt.input, lim)
			var we *Error
			if len(steps) == 0 || !errors.As(steps[0].err, &we) || we.TooBig != tt.tooBig {
				t.Fatalf("steps = %+v, want an error with TooBig %v", steps, tt.tooBig)
			}
		})
	}
}

func TestTrailingLiteral(t *testing.T) {
	tests := []struct {
		line     string
		n        uint64
		sync, ok bool
	}{
		{"a APPEND x {12}", 12, true, true},
		{"a APPEND x {12+}", 12, false, true},
		{"{0}", 0, true, true},
		{"a {99999999999999999999+}", ^uint64(0), false, true},
		{"a APPEND x {12} y", 0, false, false},
		{"a {+12}", 0, false, false},
		{"a {}", 0, false, false},
		{"a 12}", 0, false, false},
		{"", 0, false, false},
	}
	for _, tt := range tests {
		n, sync, ok := TrailingLiteral([]byte(tt.line))
		if n != tt.n || sync != tt.sync || ok != tt.ok {
			t.Errorf("TrailingLiteral(%q) = %d, %v, %v; want %d, %v, %v", tt.line, n, sync, ok, tt.n, tt.sync, tt.ok)
		}
	}
}

func TestIsAStringExcludesListParentheses(t *testing.T) {
	for kind, want := range map[ArgKind]bool{Atom: true, Quoted: true, Literal: true, ListOpen: false, ListClose: false} {
		if got := (Arg{Kind: kind}).IsAString(); got != want {
			t.Errorf("Arg{Kind: %v}.IsAString() = %v, want %v", kind, got, want)
		}
	}
}
