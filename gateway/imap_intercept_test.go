package gateway

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/rookery/rookery/internal/imapwire"
)

// runInterceptor feeds in to an interceptor whose extension answers
// "<tag> OK\r\n", and returns what imapserver would read and what the
// client was answered.
func runInterceptor(t testing.TB, in string) (passed, answered string) {
	var ans bytes.Buffer
	icpt := newInterceptor(strings.NewReader(in), &ans, func(cmd *imapwire.Command) string { return cmd.Tag + " OK " + cmd.Name + "\r\n" })
	var out bytes.Buffer
	buf := make([]byte, 7) // small reads: imapserver's bufio may ask for any size
	for i := 0; i <= len(in)+1; i++ {
		n, err := icpt.Read(buf)
		out.Write(buf[:n])
		// A client that hangs up inside a literal ends the stream with
		// io.ErrUnexpectedEOF, which imapserver treats as a closed
		// connection.
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return out.String(), ans.String()
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
	}
	t.Fatalf("interceptor made no progress on %q", in)
	return "", ""
}

func TestInterceptorPassesImapserverCommandsAndAnswersTheRest(t *testing.T) {
	tests := []struct {
		name, in, passed, answered string
	}{
		{"known commands pass untouched", "a NOOP\r\nb SELECT INBOX\r\n", "a NOOP\r\nb SELECT INBOX\r\n", ""},
		{"ACL command answered", "a MYRIGHTS INBOX\r\nb NOOP\r\n", "b NOOP\r\n", "a OK MYRIGHTS\r\n"},
		{"literal inside a passed command is not a command", "a APPEND INBOX {16}\r\nc GETACL INBOX\r\n\r\n", "a APPEND INBOX {16}\r\nc GETACL INBOX\r\n\r\n", ""},
		{"non-synchronizing literal likewise", "a APPEND INBOX {16+}\r\nc GETACL INBOX\r\n\r\nd ID NIL\r\n", "a APPEND INBOX {16+}\r\nc GETACL INBOX\r\n\r\n", "d OK ID\r\n"},
		{"DONE after IDLE passes", "a IDLE\r\nDONE\r\nb CAPABILITY\r\n", "a IDLE\r\nDONE\r\n", "b OK CAPABILITY\r\n"},
		{"literal in an intercepted command", "a SETACL {5}\r\nINBOX bob lr\r\nb NOOP\r\n", "b NOOP\r\n", "+ Ready for literal data\r\na OK SETACL\r\n"},
		{"literal size beyond int64 is no literal", "a APPEND INBOX {99999999999999999999+}\r\nc GETACL INBOX\r\n",
			"a APPEND INBOX {99999999999999999999+}\r\n", "c OK GETACL\r\n"},
		{"lower case command name", "a getquotaroot INBOX\r\n", "", "a OK GETQUOTAROOT\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			passed, answered := runInterceptor(t, tc.in)
			if passed != tc.passed || answered != tc.answered {
				t.Errorf("passed %q answered %q; want %q and %q", passed, answered, tc.passed, tc.answered)
			}
		})
	}
}

// FuzzIMAPInterceptor feeds arbitrary client bytes through the
// interceptor: it must never panic or stall, and every byte it does not
// consume for an answered command reaches imapserver in order.
func FuzzIMAPInterceptor(f *testing.F) {
	for _, s := range []string{"a NOOP\r\n", "a GETACL INBOX\r\n", "a APPEND x {3}\r\nabc\r\n", "a IDLE\r\nDONE\r\n", "a SETACL {99999999}\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		passed, _ := runInterceptor(t, in)
		if len(passed) > len(in) {
			t.Fatalf("passed %d bytes of %d", len(passed), len(in))
		}
	})
}
