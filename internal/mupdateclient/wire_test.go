package mupdateclient

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func newTestReader(s string) *respReader {
	return &respReader{br: bufio.NewReaderSize(strings.NewReader(s), 16), maxLine: 256, maxLiteral: 64}
}

func TestReadDecodesCyrusResponses(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Response
	}{
		{"QuotedOK", "X1 OK \"done\"\r\n", Response{"X1", "OK", []string{"done"}}},
		{"MailboxWithLiteralsAndTabACL", "X2 MAILBOX {15+}\r\nuser.alice.Sent {11+}\r\nbe1!default {21+}\r\nalice\tlrswipkxtecdan\t\r\n",
			Response{"X2", "MAILBOX", []string{"user.alice.Sent", "be1!default", "alice\tlrswipkxtecdan\t"}}},
		{"ReserveTwoArgs", "F1 RESERVE {5+}\r\nghost {4+}\r\nbe2!\r\n", Response{"F1", "RESERVE", []string{"ghost", "be2!"}}},
		{"StreamedDelete", "U01 DELETE {5+}\r\nab cd\r\n", Response{"U01", "DELETE", []string{"ab cd"}}},
		{"LiteralHoldingCRLFAndQuote", "U01 DELETE {4+}\r\na\r\n\"\r\n", Response{"U01", "DELETE", []string{"a\r\n\""}}},
		{"SynchronizingLiteral", "X3 MAILBOX {1}\r\na {1}\r\nb {0}\r\n\r\n", Response{"X3", "MAILBOX", []string{"a", "b", ""}}},
		{"QuotedArgsAndEscapes", "X4 MAILBOX \"a\\\"b\" \"s!p\" \"\"\r\n", Response{"X4", "MAILBOX", []string{`a"b`, "s!p", ""}}},
		{"UnquotedStatusText", "A01 NO Client canceled authentication\n", Response{"A01", "NO", []string{"Client canceled authentication"}}},
		{"LowercaseKeyword", "X5 ok \"fine\"\r\n", Response{"X5", "OK", []string{"fine"}}},
		{"BannerAuthLineKeptRaw", "* AUTH \"PLAIN\" \"LOGIN\"\r\n", Response{"*", "AUTH", []string{`"PLAIN" "LOGIN"`}}},
		{"BannerBareCapability", "* PARTIAL-UPDATE\r\n", Response{"*", "PARTIAL-UPDATE", nil}},
		{"UntaggedBye", "* BYE \"Server Unable\"\r\n", Response{"*", "BYE", []string{"Server Unable"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestReader(tc.in)
			got, err := r.read()
			if err != nil {
				t.Fatalf("read(%q): %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("read(%q) = %#v, want %#v", tc.in, got, tc.want)
			}
			if _, err := r.read(); !errors.Is(err, io.EOF) {
				t.Fatalf("bytes left over after %q: %v", tc.in, err)
			}
		})
	}
}

func TestReadRejectsMalformedResponses(t *testing.T) {
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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newTestReader(tc.in).read()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("read(%q) error = %v, want %v", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestEntryRejectsWrongShape(t *testing.T) {
	tests := []struct {
		r    Response
		want Entry
		ok   bool
	}{
		{Response{"X", "MAILBOX", []string{"n", "s!p", "a\tl\t"}}, Entry{Name: "n", Location: "s!p", ACL: "a\tl\t"}, true},
		{Response{"X", "RESERVE", []string{"n", "s!"}}, Entry{Name: "n", Location: "s!", Reserved: true}, true},
		{Response{"X", "RESERVE", []string{"n", "s!", "extra"}}, Entry{}, false},
		{Response{"X", "MAILBOX", []string{"n"}}, Entry{}, false},
		{Response{"X", "OK", []string{"done"}}, Entry{}, false},
	}
	for _, tc := range tests {
		got, err := tc.r.Entry()
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("Entry(%v) = %+v, %v; want %+v ok=%v", tc.r, got, err, tc.want, tc.ok)
		}
	}
}

func TestAppendCommandSendsEveryArgumentAsLiteralPlus(t *testing.T) {
	got := string(appendCommand(nil, "X1", "ACTIVATE", "user.alice.Sent", "be1!default", "alice\tlrs\t"))
	want := "X1 ACTIVATE {15+}\r\nuser.alice.Sent {11+}\r\nbe1!default {10+}\r\nalice\tlrs\t\r\n"
	if got != want {
		t.Fatalf("appendCommand = %q, want %q", got, want)
	}
	if got := string(appendCommand(nil, "N1", "NOOP")); got != "N1 NOOP\r\n" {
		t.Fatalf("appendCommand NOOP = %q", got)
	}
	// What we send must parse back with our own reader (literals round-trip).
	r := newTestReader("X1 MAILBOX" + strings.TrimPrefix(want, "X1 ACTIVATE"))
	resp, err := r.read()
	if err != nil || !reflect.DeepEqual(resp.Args, []string{"user.alice.Sent", "be1!default", "alice\tlrs\t"}) {
		t.Fatalf("round trip = %v, %v", resp, err)
	}
}
