package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/rookery/rookery/api"
	"github.com/rookery/rookery/fsm"
)

// entryStream prints entries as they arrive, so that listing millions of
// mailboxes needs memory for one page, not for the directory. The table is
// aligned per block of streamBlock rows; the JSON is the ListResponse shape
// ({"mailboxes":[...],"revision":"N"}) written piece by piece.
type entryStream struct {
	w     *bufio.Writer
	json  bool
	table *tabwriter.Writer
	count int
	err   error
}

// streamBlock is how many table rows are aligned (and buffered) together.
const streamBlock = 1000

func newEntryStream(w io.Writer, json bool) *entryStream {
	s := &entryStream{w: bufio.NewWriterSize(w, 64<<10), json: json}
	if !json {
		s.table = newTable(s.w)
		fmt.Fprintln(s.table, entryHeader)
	} else {
		s.w.WriteString(`{"mailboxes":[`)
	}
	return s
}

func (s *entryStream) add(e fsm.Entry) error {
	if s.err != nil {
		return s.err
	}
	if s.json {
		b, err := marshalJSON(api.MailboxToProto(e))
		if err != nil {
			return err
		}
		if s.count > 0 {
			s.w.WriteByte(',')
		}
		_, s.err = s.w.Write(b)
	} else {
		fmt.Fprintln(s.table, entryRow(e))
		if (s.count+1)%streamBlock == 0 {
			s.err = s.table.Flush()
		}
	}
	s.count++
	return s.err
}

// finish ends the output with the revision every entry was read at.
func (s *entryStream) finish(rev uint64) error {
	if s.err != nil {
		return s.err
	}
	if s.json {
		fmt.Fprintf(s.w, `],"next_page_token":"","revision":"%d"}`+"\n", rev)
	} else {
		s.table.Flush()
		fmt.Fprintf(s.w, "(%d entries at revision %d)\n", s.count, rev)
	}
	return s.w.Flush()
}

// shellQuote quotes a mailbox name for pasting into a shell.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '.' || r == '-' || r == '_' || r == '@' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
