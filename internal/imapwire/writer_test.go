package imapwire

import (
	"bufio"
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestWriterCyrusLiteralForm(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.WriteData("X0", "MAILBOX", "user.alice", "be1!default", "alice\tlrswipkxtecdan\t")
	w.WriteData("X0", "RESERVE", "user.alice.Sent", "be1!default")
	w.WriteData("U01", "DELETE", "tmpbox")
	w.WriteReply("X0", "OK", "list complete")
	w.Flush()
	want := "X0 MAILBOX {10+}\r\nuser.alice {11+}\r\nbe1!default {21+}\r\nalice\tlrswipkxtecdan\t\r\n" +
		"X0 RESERVE {15+}\r\nuser.alice.Sent {11+}\r\nbe1!default\r\n" +
		"U01 DELETE {6+}\r\ntmpbox\r\n" +
		"X0 OK \"list complete\"\r\n"
	if buf.String() != want {
		t.Errorf("got\n%q\nwant\n%q", buf.String(), want)
	}
}

func TestWriterQuotesWhenSafe(t *testing.T) {
	tests := []struct{ in, want string }{
		{"user.alice", `"user.alice"`},
		{"alice\tlrs\t", "\"alice\tlrs\t\""},
		{"", `""`},
		{`a"b`, "{3+}\r\na\"b"},
		{`a\b`, "{3+}\r\na\\b"},
		{"caf\xc3\xa9", "{5+}\r\ncaf\xc3\xa9"},
		{"a\r\nb", "{4+}\r\na\r\nb"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		w.SetQuoteStrings(true)
		w.WriteData("F1", "DELETE", tt.in)
		w.Flush()
		if got := strings.TrimSuffix(strings.TrimPrefix(buf.String(), "F1 DELETE "), "\r\n"); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWriterReplyTextAlwaysAString(t *testing.T) {
	tests := []struct{ text, want string }{
		{"done", "A NO \"done\"\r\n"},
		{`say "hi" \o/`, "A NO \"say \\\"hi\\\" \\\\o/\"\r\n"},
		{"", "A NO \"\"\r\n"},
		{"two\r\nlines", "A NO {10+}\r\ntwo\r\nlines\r\n"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		w.WriteReply("A", "NO", tt.text)
		w.Flush()
		if buf.String() != tt.want {
			t.Errorf("%q: got %q, want %q", tt.text, buf.String(), tt.want)
		}
	}
}

// TestWriterOutputParsesBack proves the writer and reader agree on every
// form, including escapes and literals with line ends inside.
func TestWriterOutputParsesBack(t *testing.T) {
	args := []string{"user.alice", "", "a\"b\\c", "x\r\ny", "caf\xc3\xa9", "anyone\tlrs\t"}
	for _, quote := range []bool{false, true} {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		w.SetQuoteStrings(quote)
		w.WriteData("T1", "MAILBOX", args...)
		w.WriteReply("T1", "OK", `with "quotes"`)
		w.Flush()
		r := NewReader(bufio.NewReader(&buf), DefaultLimits())
		c, err := r.ReadCommand()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range c.Args {
			got = append(got, a.Value)
		}
		if !reflect.DeepEqual(got, args) {
			t.Errorf("quote=%v: got %q, want %q", quote, got, args)
		}
		c, err = r.ReadCommand()
		if err != nil || c.Name != "OK" || c.Args[0].Value != `with "quotes"` {
			t.Errorf("reply parsed as %+v, %v", c, err)
		}
	}
}
