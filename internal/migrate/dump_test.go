package migrate

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func readAll(t *testing.T, dump, server string) ([]Entry, int, error) {
	t.Helper()
	var out []Entry
	skipped, err := ReadDump(strings.NewReader(dump), server, func(e Entry) error { out = append(out, e); return nil })
	return out, skipped, err
}

// TestReadDumpOfARealMaster reads what Cyrus 3.6's `ctl_mboxlist -d` printed
// on a real mupdate master (testdata), keeping ACL order and reservations.
func TestReadDumpOfARealMaster(t *testing.T) {
	b, err := os.ReadFile("testdata/ctl_mboxlist-d.json")
	if err != nil {
		t.Fatal(err)
	}
	got, skipped, err := readAll(t, string(b), "")
	if err != nil || skipped != 0 {
		t.Fatalf("%v, %d skipped", err, skipped)
	}
	want := []Entry{
		{Name: "DELETED.user.x.65E33B49", Location: "be1!"},
		{Name: "example.com!user.carol.Sent", Location: "be2!", ACL: "carol@example.com\tlrs\t"},
		{Name: "user.alice", Location: "be1!default", ACL: "alice\tlrswipkxtecdan\tanyone\tp\t"},
		{Name: "user.bob", Location: "be2!default", Reserved: true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestReadDumpSkipsTombstonesAndNamesBadInput(t *testing.T) {
	tests := []struct {
		name, dump, server string
		entries, skipped   int
		err                string
	}{
		{"tombstone and intermediate skipped", `{"a": {"name":"a","mbtype":"d","server":"be1"}, "b": {"mbtype":"i","server":"be1"}, "c": {"mbtype":"e","server":"be1","partition":"p"}}`, "", 1, 2, ""},
		{"local dump with a servername", `{"user.a": {"mbtype":"e","partition":"default","acl":{"a":"lrs"}}}`, "be9", 1, 0, ""},
		{"local dump without one", `{"user.a": {"mbtype":"e","partition":"default"}}`, "", 0, 0, "no server"},
		{"empty dump", `{}`, "", 0, 0, ""},
		{"not an object", `[]`, "", 0, 0, "want"},
		{"truncated", `{"user.a": {"mbtype":"e","server":"be1"}`, "", 1, 0, "EOF"},
		{"key and name disagree", `{"user.a": {"name":"user.b","server":"be1"}}`, "", 0, 0, "holds the record"},
		{"acl not an object", `{"user.a": {"server":"be1","acl":"x"}}`, "", 0, 0, "acl"},
		{"trailing data", `{} {}`, "", 0, 0, "after the closing brace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, skipped, err := readAll(t, tt.dump, tt.server)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrDump)) {
				t.Fatalf("err %v, want %q", err, tt.err)
			}
			if len(got) != tt.entries || skipped != tt.skipped {
				t.Fatalf("%d entries %d skipped: %+v", len(got), skipped, got)
			}
		})
	}
}

func FuzzReadDump(f *testing.F) {
	if b, err := os.ReadFile("testdata/ctl_mboxlist-d.json"); err == nil {
		f.Add(string(b))
	}
	f.Add(`{"user.a": {"mbtype":"z","server":"be1","acl":{"a":"b"}}}`)
	f.Fuzz(func(t *testing.T, dump string) {
		ReadDump(strings.NewReader(dump), "be1", func(e Entry) error {
			if e.Name == "" && !strings.Contains(dump, `""`) {
				t.Fatalf("empty name from %q", dump)
			}
			return nil
		})
	})
}
