// Package migrate moves a Cyrus murder's directory into Rookery: from a
// running mupdate master (as a slave would: UPDATE, then the stream) or
// from a `ctl_mboxlist -d` dump, written through the gRPC Batch API. It
// depends on the client side only (client, internal/mupdateclient), never
// on the server, so that rookeryctl stays a thin binary.
package migrate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/rookery/rookery/internal/mupdateclient"
)

// Entry is one directory entry as MUPDATE carries it: name, location
// ("server!partition"), ACL ("id\trights\t..."), and whether it is only
// RESERVED.
type Entry = mupdateclient.Entry

// ErrDump is wrapped by every error about the content of a dump.
var ErrDump = errors.New("migrate: bad ctl_mboxlist -d dump")

// dumpRecord is the part of one `ctl_mboxlist -d` record (Cyrus 3.x JSON)
// the directory needs. The ACL is kept raw so that its order survives.
type dumpRecord struct {
	Name      string          `json:"name"`
	MBType    string          `json:"mbtype"`
	Partition string          `json:"partition"`
	Server    string          `json:"server"`
	ACL       json.RawMessage `json:"acl"`
}

// ReadDump streams the output of Cyrus's `ctl_mboxlist -d`: one JSON object
// mapping each internal name to its record, e.g.
//
//	{"user.alice": {"name": "user.alice", "mbtype": "er", "partition": "default",
//	  "server": "be1", "acl": {"alice": "lrswipkxtecdan", "anyone": "p"}, ...}, ...}
//
// mbtype letters: 'z' a reservation (RESERVED), 'd' a deleted tombstone and
// 'i' an intermediate folder (neither is in the MUPDATE directory: skipped
// and counted); everything else (e email, r remote, c, n, ...) is a mailbox.
// The location is server!partition; a dump of a backend's own mailboxes.db
// has no server, and localServer is used (an error when it is empty).
//
// Memory stays bounded by one record, whatever the dump's size. fn's error
// stops the read and is returned.
func ReadDump(r io.Reader, localServer string, fn func(Entry) error) (skipped int, err error) {
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return 0, err
	}
	for n := 0; dec.More(); n++ {
		tok, err := dec.Token()
		if err != nil {
			return skipped, fmt.Errorf("%w: entry %d: %w", ErrDump, n, err)
		}
		key, _ := tok.(string)
		var rec dumpRecord
		if err := dec.Decode(&rec); err != nil {
			return skipped, fmt.Errorf("%w: %q: %w", ErrDump, key, err)
		}
		if rec.Name == "" {
			rec.Name = key
		}
		if rec.Name != key {
			return skipped, fmt.Errorf("%w: key %q holds the record of %q", ErrDump, key, rec.Name)
		}
		if strings.ContainsAny(rec.MBType, "di") {
			skipped++
			continue
		}
		e, err := rec.entry(localServer)
		if err != nil {
			return skipped, fmt.Errorf("%w: %q: %w", ErrDump, key, err)
		}
		if err := fn(e); err != nil {
			return skipped, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return skipped, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return skipped, fmt.Errorf("%w: data after the closing brace", ErrDump)
	}
	return skipped, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDump, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("%w: want %q, got %v", ErrDump, want, tok)
	}
	return nil
}

func (rec dumpRecord) entry(localServer string) (Entry, error) {
	server := rec.Server
	if server == "" {
		server = localServer
	}
	if server == "" {
		return Entry{}, errors.New("no server (a backend's local dump? give its servername)")
	}
	acl, err := aclString(rec.ACL)
	if err != nil {
		return Entry{}, fmt.Errorf("acl: %w", err)
	}
	e := Entry{Name: rec.Name, Location: server + "!" + rec.Partition, ACL: acl}
	if strings.ContainsRune(rec.MBType, 'z') {
		e.Reserved, e.ACL = true, ""
	}
	return e, nil
}

// aclString turns the dump's ACL object into the Cyrus string form, in the
// dump's order ("id\trights\t" per entry).
func aclString(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := expectDelim(dec, '{'); err != nil {
		return "", err
	}
	var b strings.Builder
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return "", err
		}
		var rights string
		if err := dec.Decode(&rights); err != nil {
			return "", err
		}
		id, _ := k.(string)
		b.WriteString(id + "\t" + rights + "\t")
	}
	return b.String(), nil
}
