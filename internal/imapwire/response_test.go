package imapwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func newResponseReader(s string) *Reader {
	return NewReader(bufio.NewReaderSize(strings.NewReader(s), 16), Limits{MaxLineLength: 256, MaxLiteralSize: 64})
}

func TestReadResponseDecodesCyrusResponses(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Response
	}{
		{"QuotedOK", "X1 OK \"done\"\r\n", Response{Tag: "X1", Kind: KindOK, Text: "done"}},
		{"MailboxWithLiteralsAndTabACL", "X2 MAILBOX {15+}\r\nuser.alice.Sent {11+}\r\nbe1!default {21+}\r\nalice\tlrswipkxtecdan\t\r\n",
			Response{Tag: "X2", Kind: KindMailbox, Name: "user.alice.Sent", Location: "be1!default", ACL: "alice\tlrswipkxtecdan\t"}},
		{"ReserveTwoArgs", "F1 RESERVE {5+}\r\nghost {4+}\r\nbe2!\r\n", Response{Tag: "F1", Kind: KindReserve, Name: "ghost", Location: "be2!"}},
		{"StreamedDelete", "U01 DELETE {5+}\r\nab cd\r\n", Response{Tag: "U01", Kind: KindDelete, Name: "ab cd"}},
		{"LiteralHoldingCRLFAndQuote", "U01 DELETE {4+}\r\na\r\n\"\r\n", Response{Tag: "U01", Kind: KindDelete, Name: "a\r\n\""}},
		{"SynchronizingLiteral", "X3 MAILBOX {1}\r\na {1}\r\nb {0}\r\n\r\n", Response{Tag: "X3", Kind: KindMailbox, Name: "a", Location: "b"}},
		{"QuotedArgsAndEscapes", "X4 MAILBOX \"a\\\"b\" \"s!p\" \"\"\r\n", Response{Tag: "X4", Kind: KindMailbox, Name: `a"b`, Location: "s!p"}},
		{"UnquotedStatusText", "A01 NO Client canceled authentication\n", Response{Tag: "A01", Kind: KindNO, Text: "Client canceled authentication"}},
		{"LiteralStatusText", "X6 BAD {3+}\r\n\x01\x02\x03\r\n", Response{Tag: "X6", Kind: KindBAD, Text: "\x01\x02\x03"}},
		{"LowercaseKeyword", "X5 ok \"fine\"\r\n", Response{Tag: "X5", Kind: KindOK, Text: "fine"}},
		{"BannerOKKeptRaw", "* OK MUPDATE \"m\" \"Cyrus IMAP\" \"3.6.1\" \"(master)\"\r\n",
			Response{Tag: "*", Kind: KindOK, Text: `MUPDATE "m" "Cyrus IMAP" "3.6.1" "(master)"`}},
		{"BannerAuthLineKeptRaw", "* AUTH \"PLAIN\" \"LOGIN\"\r\n", Response{Tag: "*", Kind: "AUTH", Text: `"PLAIN" "LOGIN"`}},
		{"BannerBareCapability", "* PARTIAL-UPDATE\r\n", Response{Tag: "*", Kind: "PARTIAL-UPDATE"}},
		{"UntaggedBye", "* BYE \"Server Unable\"\r\n", Response{Tag: "*", Kind: KindBYE, Text: "Server Unable"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newResponseReader(tc.in)
			got, err := r.ReadResponse()
			if err != nil {
				t.Fatalf("ReadResponse(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("ReadResponse(%q) = %#v, want %#v", tc.in, got, tc.want)
			}
			if _, err := r.ReadResponse(); !errors.Is(err, io.EOF) {
				t.Fatalf("bytes left over after %q: %v", tc.in, err)
			}
		})
	}
}

func TestReadResponseRejectsMalformedResponses(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr error
	}{
		{"LiteralOverLimit", "X1 MAILBOX {65+}\r\n" + strings.Repeat("a", 65) + "\r\n", ErrProtocol},
		{"EOFInsideLiteral", "X1 MAILBOX {10+}\r\nabc", io.ErrUnexpectedEOF},
		{"EOFInsideLine", "X1 OK \"do", io.ErrUnexpectedEOF},
		{"LineOverLimit", "X1 OK \"" + strings.Repeat("a", 300) + "\"\r\n", ErrProtocol},
		{"EmptyLine", "\r\n", ErrProtocol},
		{"TagOnly", "X1\r\n", ErrProtocol},
		{"UnterminatedQuotedArg", "X1 MAILBOX \"abc\r\n", ErrProtocol},
		{"NoSpaceBetweenArgs", "X1 MAILBOX \"a\"\"b\"\r\n", ErrProtocol},
		{"MailboxWithTwoStrings", "X1 MAILBOX \"a\" \"b\"\r\n", ErrProtocol},
		{"ReserveWithThreeStrings", "X1 RESERVE \"a\" \"b\" \"c\"\r\n", ErrProtocol},
		{"DeleteWithoutName", "X1 DELETE\r\n", ErrProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newResponseReader(tc.in).ReadResponse()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ReadResponse(%q) error = %v, want %v", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestWriteCommandSendsLiteralPlusThatReadsBack(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.WriteCommand(Command{Tag: "X1", Name: "ACTIVATE", Args: []Arg{literal("user.alice.Sent"), literal("be1!default"), literal("alice\tlrs\t")}})
	w.WriteCommand(Command{Tag: "A01", Name: "AUTHENTICATE", Args: []Arg{quoted("PLAIN"), literal("AG11")}})
	w.WriteCommand(Command{Tag: "N1", Name: "NOOP"})
	w.Flush()
	want := "X1 ACTIVATE {15+}\r\nuser.alice.Sent {11+}\r\nbe1!default {10+}\r\nalice\tlrs\t\r\n" +
		"A01 AUTHENTICATE \"PLAIN\" {4+}\r\nAG11\r\n" +
		"N1 NOOP\r\n"
	if buf.String() != want {
		t.Fatalf("WriteCommand wrote %q, want %q", buf.String(), want)
	}
	// The server side of the codec reads back exactly what was written.
	r := NewReader(bufio.NewReader(&buf), Limits{})
	c, err := r.ReadCommand()
	if err != nil || c.Name != "ACTIVATE" || len(c.Args) != 3 || c.Args[2] != literal("alice\tlrs\t") {
		t.Fatalf("read back %+v, %v", c, err)
	}
}

// TestReadResponseDecodesEveryCyrusTranscript reads the fuzz seeds taken
// from real Cyrus master output to the end: none may be a protocol error.
func TestReadResponseDecodesEveryCyrusTranscript(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzReadResponse/cyrus-*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcript seeds: %v", err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, body, _ := strings.Cut(strings.TrimSpace(string(raw)), "\n")
		data, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(body, "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		r := NewReader(bufio.NewReader(strings.NewReader(data)), Limits{})
		n := 0
		for ; ; n++ {
			if _, err = r.ReadResponse(); err != nil {
				break
			}
		}
		if !errors.Is(err, io.EOF) || n == 0 {
			t.Errorf("%s: %d responses, then %v; want EOF", filepath.Base(f), n, err)
		}
	}
}
