package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/rookery/rookery/fsm"
	"github.com/rookery/rookery/internal/pbconv"
)

// printJSON writes one protobuf message as a JSON line, with the .proto
// field names, so scripts see the same names as the API documentation.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := marshalJSON(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func marshalJSON(m proto.Message) ([]byte, error) {
	return protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// formatACL shows a Cyrus ACL ("id\trights\t...") as "id=rights id=rights".
func formatACL(acl string) string {
	parts := strings.Split(strings.TrimSuffix(acl, "\t"), "\t")
	var out []string
	for i := 0; i+1 < len(parts); i += 2 {
		out = append(out, parts[i]+"="+parts[i+1])
	}
	if len(parts)%2 == 1 && parts[len(parts)-1] != "" {
		out = append(out, parts[len(parts)-1])
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, " ")
}

// parseACL accepts an ACL as Cyrus stores it (tab-separated), with "\t"
// typed literally, or as "id=rights" pairs separated by spaces or commas.
func parseACL(s string) (string, error) {
	if strings.Contains(s, "\t") {
		return s, nil
	}
	if strings.Contains(s, `\t`) {
		return strings.ReplaceAll(s, `\t`, "\t"), nil
	}
	if s == "" {
		return "", nil
	}
	var b strings.Builder
	for _, pair := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' }) {
		id, rights, ok := strings.Cut(pair, "=")
		if !ok || id == "" {
			return "", fmt.Errorf("ACL entry %q is not id=rights (or give the Cyrus form with tabs)", pair)
		}
		b.WriteString(id + "\t" + rights + "\t")
	}
	return b.String(), nil
}

func entryRow(e fsm.Entry) string {
	reserved := "-"
	if e.ReservedBy != "" || e.ReservedAt != 0 {
		reserved = e.ReservedBy
		if e.ReservedAt != 0 {
			reserved += "@" + time.Unix(0, e.ReservedAt).UTC().Format(time.RFC3339)
		}
	}
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%d\t%d\t%s", e.Name, e.State, dash(e.Location), formatACL(e.ACL), e.ModRevision, e.CreateRevision, reserved)
}

const entryHeader = "NAME\tSTATE\tLOCATION\tACL\tMOD\tCREATE\tRESERVED"

func printEntries(w io.Writer, entries []fsm.Entry) {
	t := newTable(w)
	fmt.Fprintln(t, entryHeader)
	for _, e := range entries {
		fmt.Fprintln(t, entryRow(e))
	}
	t.Flush()
}

func eventRow(ev fsm.Event) string {
	op := ev.Op.String()
	if ev.Op == 0 {
		op = "PUT"
		if ev.Type == fsm.EventDelete {
			op = "DELETE"
		}
	}
	move := ""
	if ev.PrevLocation != "" && ev.PrevLocation != ev.Entry.Location {
		move = " (from " + ev.PrevLocation + ")"
	}
	return fmt.Sprintf("%d\t%s\t%s\t%s\t%s%s", ev.Revision, op, ev.Entry.Name, ev.Entry.State, dash(ev.Entry.Location), move)
}

func eventJSON(w io.Writer, ev fsm.Event) error { return printJSON(w, pbconv.EventToProto(ev)) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func unixNanoText(ns int64) string {
	if ns == 0 {
		return "-"
	}
	d := time.Since(time.Unix(0, ns)).Round(time.Millisecond)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}
