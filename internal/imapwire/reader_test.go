package imapwire

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// step is what one ReadCommand call returned.
type step struct {
	cmd *Command
	err error
}

// readAll reads commands from input until the stream fails or a fatal
// error, and counts continuations.
func readAll(t *testing.T, input string, lim Limits) (steps []step, conts int) {
	t.Helper()
	return readAllIn(t, MUPDATE, input, lim)
}

// readAllIn is readAll in the given syntax.
func readAllIn(t *testing.T, syntax Syntax, input string, lim Limits) (steps []step, conts int) {
	t.Helper()
	r := NewReader(bufio.NewReader(strings.NewReader(input)), lim)
	r.SetSyntax(syntax)
	r.SetContinuation(func() error { conts++; return nil })
	for i := 0; i < 100; i++ {
		cmd, err := r.ReadCommand()
		if err != nil && !isWireErr(err) {
			return steps, conts
		}
		steps = append(steps, step{cmd, err})
		if err != nil && err.(*Error).Fatal {
			return steps, conts
		}
	}
	t.Fatal("reader did not stop")
	return nil, 0
}

func isWireErr(err error) bool {
	var we *Error
	return errors.As(err, &we)
}

func cmd(tag, name string, args ...Arg) *Command {
	return &Command{Tag: tag, Name: name, Args: args}
}
func atom(s string) Arg    { return Arg{Kind: Atom, Value: s} }
func quoted(s string) Arg  { return Arg{Kind: Quoted, Value: s} }
func literal(s string) Arg { return Arg{Kind: Literal, Value: s} }

func TestReadCommandParsesEveryStringForm(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  *Command
		conts int
	}{
		{"cyrus literal plus", "X0 RESERVE {15+}\r\nuser.alice.Sent {11+}\r\nbe1!default\r\n",
			cmd("X0", "RESERVE", literal("user.alice.Sent"), literal("be1!default")), 0},
		{"acl with tabs", "X1 ACTIVATE {5+}\r\nghost {11+}\r\nbe1!default {11+}\r\nanyone\tlrs\t\r\n",
			cmd("X1", "ACTIVATE", literal("ghost"), literal("be1!default"), literal("anyone\tlrs\t")), 0},
		{"quoted mechanism and literal IR", "A01 AUTHENTICATE \"PLAIN\" {24+}\r\nAG11cGRhdGUAbXVwZGF0ZXB3\r\n",
			cmd("A01", "AUTHENTICATE", quoted("PLAIN"), literal("AG11cGRhdGUAbXVwZGF0ZXB3")), 0},
		{"synchronizing literal asks for continuation", "F1 FIND {3}\r\nabc\r\n",
			cmd("F1", "FIND", literal("abc")), 1},
		{"bare LF line ends", "F1 FIND {3+}\nabc\n", cmd("F1", "FIND", literal("abc")), 0},
		{"atoms", "A1 AUTHENTICATE PLAIN =\r\n", cmd("A1", "AUTHENTICATE", atom("PLAIN"), atom("=")), 0},
		{"backslash escapes", `L1 LIST "a\"b\\c\d"` + "\r\n", cmd("L1", "LIST", quoted(`a"b\cd`)), 0},
		{"empty quoted and empty literal", "R1 RESERVE \"\" {0+}\r\n\r\n", cmd("R1", "RESERVE", quoted(""), literal("")), 0},
		{"literal with CRLF inside", "R1 FIND {4+}\r\na\r\nb\r\n", cmd("R1", "FIND", literal("a\r\nb")), 0},
		{"trailing spaces", "N1 NOOP  \r\n", cmd("N1", "NOOP"), 0},
		{"several spaces between args", "U1 UPDATE  \"a\"   \"b\"\r\n", cmd("U1", "UPDATE", quoted("a"), quoted("b")), 0},
		{"no args", "Q01 LOGOUT\r\n", cmd("Q01", "LOGOUT"), 0},
		{"lower case command kept as sent", "n1 noop\r\n", cmd("n1", "noop"), 0},
		{"eight-bit bytes in strings", "F1 FIND \"\xc3\xa9\"\r\n", cmd("F1", "FIND", quoted("\xc3\xa9")), 0},
		{"empty line", "\r\n", &Command{}, 0},
		{"blank line", "   \r\n", &Command{}, 0},
		{"tag only", "A1\r\n", &Command{Tag: "A1"}, 0},
		{"tag and space", "A1 \r\n", &Command{Tag: "A1"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, conts := readAll(t, tt.input, DefaultLimits())
			if len(steps) != 1 || steps[0].err != nil {
				t.Fatalf("steps = %+v", steps)
			}
			if !reflect.DeepEqual(steps[0].cmd, tt.want) {
				t.Errorf("got %+v, want %+v", steps[0].cmd, tt.want)
			}
			if conts != tt.conts {
				t.Errorf("continuations = %d, want %d", conts, tt.conts)
			}
		})
	}
}

// TestReadCommandResyncsAfterBadInput proves that every non-fatal error
// consumes exactly the bad command: the NOOP after it is read intact.
func TestReadCommandResyncsAfterBadInput(t *testing.T) {
	tests := []struct {
		name, input string
		tag, text   string
	}{
		{"invalid tag char", "A\"1 NOOP\r\n", "", "Invalid tag"},
		{"star tag", "* NOOP\r\n", "", "Invalid tag"},
		{"leading space", " A1 NOOP\r\n", "", "Invalid tag"},
		{"NUL in tag", "A\x001 NOOP\r\n", "", "Invalid tag"},
		{"unterminated quote", "A1 FIND \"abc\r\n", "A1", "Invalid quoted string"},
		{"NUL in quoted", "A1 FIND \"a\x00c\"\r\n", "A1", "Invalid quoted string"},
		{"garbage after string", "A1 FIND \"a\"x\r\n", "A1", "Extra arguments"},
		{"parenthesis", "A1 FIND (a)\r\n", "A1", "Invalid characters in command"},
		{"NUL argument", "A1 FIND \x00\r\n", "A1", "Invalid characters in command"},
		{"literal not at end of line", "A1 FIND {3+}abc\r\n", "A1", "Invalid literal"},
		{"empty literal length", "A1 FIND {}\r\n", "A1", "Invalid literal"},
		{"NUL in literal", "A1 FIND {3+}\r\na\x00c\r\n", "A1", "NUL byte in literal"},
		{"bad then literal plus is skipped", "A1 FIND \"x {5+}\r\nhello {2+}\r\nhi\r\n", "A1", "Invalid quoted string"},
		{"sync literal too large refused before sending", "A1 FIND {999999999}\r\n", "A1", "Literal too large"},
		{"too many args", "A1 UPDATE" + strings.Repeat(" a", 65) + "\r\n", "A1", "Too many arguments"},
		{"command name not an atom", "A1 \"NOOP\"\r\n", "A1", "Unrecognized command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, conts := readAll(t, tt.input+"N9 NOOP\r\n", DefaultLimits())
			if len(steps) != 2 {
				t.Fatalf("steps = %+v", steps)
			}
			var we *Error
			if !errors.As(steps[0].err, &we) {
				t.Fatalf("first step: %+v, want a wire error", steps[0])
			}
			if we.Tag != tt.tag || we.Text != tt.text || we.Fatal {
				t.Errorf("error = %+v, want tag %q text %q non-fatal", we, tt.tag, tt.text)
			}
			if !reflect.DeepEqual(steps[1].cmd, cmd("N9", "NOOP")) {
				t.Errorf("after the error got %+v, want N9 NOOP", steps[1])
			}
			if conts != 0 {
				t.Errorf("continuations = %d, want none", conts)
			}
		})
	}
}

// TestReadCommandFatalOnUnboundedInput proves the reader gives up, without
// buffering what was announced, when it cannot know where the next command
// starts.
func TestReadCommandFatalOnUnboundedInput(t *testing.T) {
	lim := DefaultLimits()
	tests := []struct {
		name, input string
		tag, text   string
	}{
		{"2 MiB tag", strings.Repeat("A", 2<<20) + " NOOP\r\n", "", "Line too long"},
		{"2 MiB line without LF", strings.Repeat("x", 2<<20), "", "Line too long"},
		{"literal plus of 2 GiB", "A1 FIND {2147483648+}\r\nabc", "A1", "Literal too large"},
		{"literal plus of 999999999", "A1 FIND {999999999+}\r\n", "A1", "Literal too large"},
		{"literal length overflowing uint64", "A1 FIND {99999999999999999999999999+}\r\n", "A1", "Literal too large"},
		{"commands over the command budget", "A1 ACTIVATE" + strings.Repeat(" {200000+}\r\n"+strings.Repeat("a", 200000), 6) + "\r\n", "A1", "Command too long"},
		{"skipped literal too large", "A1 FIND \"x {999999+}\r\n", "A1", "Invalid quoted string"},
		{"overlong line after literal keeps tag", "A1 FIND {1+}\r\na" + strings.Repeat(" b", lim.MaxLineLength) + "\r\n", "A1", "Line too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, _ := readAll(t, tt.input+"N9 NOOP\r\n", lim)
			if len(steps) != 1 {
				t.Fatalf("steps = %d, want 1 (fatal): %+v", len(steps), steps)
			}
			var we *Error
			if !errors.As(steps[0].err, &we) || !we.Fatal {
				t.Fatalf("got %+v, want a fatal wire error", steps[0])
			}
			if we.Tag != tt.tag || we.Text != tt.text {
				t.Errorf("error = %+v, want tag %q text %q", we, tt.tag, tt.text)
			}
		})
	}
}

func TestReadCommandReportsTruncatedInput(t *testing.T) {
	for name, input := range map[string]string{
		"half-sent literal":      "A1 FIND {10+}\r\nabc",
		"line without end":       "A1 NOOP",
		"literal, no next line":  "A1 FIND {3+}\r\nabc",
		"header then nothing":    "A1 FIND {3+}\r\n",
		"skipped literal halved": "A1 FIND \"x {10+}\r\nabc",
	} {
		t.Run(name, func(t *testing.T) {
			r := NewReader(bufio.NewReader(strings.NewReader(input)), DefaultLimits())
			_, err := r.ReadCommand()
			if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				t.Fatalf("err = %v, want unexpected EOF", err)
			}
		})
	}
	r := NewReader(bufio.NewReader(strings.NewReader("")), DefaultLimits())
	if _, err := r.ReadCommand(); err != io.EOF {
		t.Fatalf("empty stream: err = %v, want io.EOF", err)
	}
}

// TestReadCommandDoesNotAllocateAnnouncedSize checks the memory promise:
// announcing a huge literal costs nothing, and an allowed literal that never
// arrives costs only what arrived.
func TestReadCommandDoesNotAllocateAnnouncedSize(t *testing.T) {
	lim := DefaultLimits()
	input := "A1 FIND {" + strconv.Itoa(lim.MaxLiteralSize) + "+}\r\nabc"
	const runs = 50
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < runs; i++ {
		r := NewReader(bufio.NewReaderSize(strings.NewReader(input), 4096), lim)
		if _, err := r.ReadCommand(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	// The bufio buffer (4 KiB) and the line scratch dominate; a buffer of
	// the announced size would be 256 KiB.
	if got := (after.TotalAlloc - before.TotalAlloc) / runs; got > 16<<10 {
		t.Errorf("a truncated %d-byte literal allocated %d bytes per command", lim.MaxLiteralSize, got)
	}
}

func TestReadLineForSASL(t *testing.T) {
	r := NewReader(bufio.NewReader(strings.NewReader("AGFiYwBkZWY=\r\n*\n\r\n")), DefaultLimits())
	for _, want := range []string{"AGFiYwBkZWY=", "*", ""} {
		got, err := r.ReadLine()
		if err != nil || string(got) != want {
			t.Fatalf("ReadLine = %q, %v; want %q", got, err, want)
		}
	}
	long := NewReader(bufio.NewReader(strings.NewReader(strings.Repeat("A", 70000)+"\r\n")), DefaultLimits())
	if _, err := long.ReadLine(); !isWireErr(err) {
		t.Fatalf("overlong SASL line: err = %v, want wire error", err)
	}
}

func TestSetLimitsAppliesToNextCommand(t *testing.T) {
	r := NewReader(bufio.NewReader(strings.NewReader("A1 FIND {100}\r\nA2 FIND {100+}\r\n"+strings.Repeat("x", 100)+"\r\n")), Limits{MaxLiteralSize: 10})
	if _, err := r.ReadCommand(); !isWireErr(err) || err.(*Error).Fatal {
		t.Fatalf("err = %v, want non-fatal Literal too large", err)
	}
	r.SetLimits(Limits{MaxLiteralSize: 1000})
	c, err := r.ReadCommand()
	if err != nil || len(c.Args) != 1 || len(c.Args[0].Value) != 100 {
		t.Fatalf("after SetLimits: %+v, %v", c, err)
	}
}
