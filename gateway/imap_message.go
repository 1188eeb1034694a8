package gateway

import (
	"bytes"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
)

// Selected-state commands of the murder session: they go to the selected
// mailbox's backend, whose sequence numbers and UIDs the client sees
// unchanged. COPY and MOVE to a mailbox on another backend are done as
// Cyrus proxyd does them: fetch from the source, append to the
// destination (flags and internal date kept), then, for MOVE, expunge the
// source messages.

func (ms *imapMurderSession) selected() (*selection, error) {
	if ms.sel == nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "No mailbox selected"}
	}
	ms.touched = true
	return ms.sel, nil
}

// Expunge implements imapserver.Session.
func (ms *imapMurderSession) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	sel, err := ms.selected()
	if err != nil {
		return err
	}
	var cmd *imapclient.ExpungeCommand
	if uids != nil {
		cmd = sel.client.UIDExpunge(*uids)
	} else {
		cmd = sel.client.Expunge()
	}
	for seq := cmd.Next(); seq != 0; seq = cmd.Next() {
		if err := w.WriteExpunge(seq); err != nil {
			cmd.Close()
			return err
		}
	}
	return ms.backendErr(sel.server, cmd.Close())
}

// Search implements imapserver.Session.
func (ms *imapMurderSession) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	sel, err := ms.selected()
	if err != nil {
		return nil, err
	}
	var cmd *imapclient.SearchCommand
	if kind == imapserver.NumKindUID {
		cmd = sel.client.UIDSearch(criteria, options)
	} else {
		cmd = sel.client.Search(criteria, options)
	}
	data, err := cmd.Wait()
	if err != nil {
		return nil, ms.backendErr(sel.server, err)
	}
	if data.All == nil {
		// imapserver cannot write a SEARCH response without a set (it
		// emits "* SEARCH" and no line end): give it an empty one.
		if kind == imapserver.NumKindUID {
			data.All = imap.UIDSet{}
		} else {
			data.All = imap.SeqSet{}
		}
	}
	return data, nil
}

// Fetch implements imapserver.Session, streaming body sections from the
// backend to the client as they arrive.
func (ms *imapMurderSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	sel, err := ms.selected()
	if err != nil {
		return err
	}
	return ms.relayFetch(sel, w, sel.client.Fetch(numSet, options))
}

// Store implements imapserver.Session.
func (ms *imapMurderSession) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	sel, err := ms.selected()
	if err != nil {
		return err
	}
	return ms.relayFetch(sel, w, sel.client.Store(numSet, flags, options))
}

func (ms *imapMurderSession) relayFetch(sel *selection, w *imapserver.FetchWriter, cmd *imapclient.FetchCommand) error {
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		if err := ms.relayMessage(w.CreateMessage(msg.SeqNum), msg); err != nil {
			cmd.Close()
			return err
		}
	}
	return ms.backendErr(sel.server, cmd.Close())
}

func (ms *imapMurderSession) relayMessage(rw *imapserver.FetchResponseWriter, msg *imapclient.FetchMessageData) error {
	for item := msg.Next(); item != nil; item = msg.Next() {
		switch item := item.(type) {
		case imapclient.FetchItemDataUID:
			rw.WriteUID(item.UID)
		case imapclient.FetchItemDataFlags:
			rw.WriteFlags(item.Flags)
		case imapclient.FetchItemDataRFC822Size:
			rw.WriteRFC822Size(item.Size)
		case imapclient.FetchItemDataInternalDate:
			rw.WriteInternalDate(item.Time)
		case imapclient.FetchItemDataEnvelope:
			rw.WriteEnvelope(item.Envelope)
		case imapclient.FetchItemDataBodyStructure:
			rw.WriteBodyStructure(item.BodyStructure)
		case imapclient.FetchItemDataBinarySectionSize:
			rw.WriteBinarySectionSize(&imap.FetchItemBinarySectionSize{Part: item.Part}, item.Size)
		case imapclient.FetchItemDataBodySection:
			if err := ms.copyLiteral(rw.WriteBodySection(item.Section, literalSize(item.Literal)), item.Literal); err != nil {
				return err
			}
		case imapclient.FetchItemDataBinarySection:
			if err := ms.copyLiteral(rw.WriteBinarySection(item.Section, literalSize(item.Literal)), item.Literal); err != nil {
				return err
			}
		}
	}
	return rw.Close()
}

func literalSize(l imap.LiteralReader) int64 {
	if l == nil {
		return 0
	}
	return l.Size()
}

// copyLiteral streams a body from the backend to the client through a
// large buffer: fewer, larger reads and writes mean fewer wake-ups of the
// three processes involved, which is what limits a relay on a busy
// machine (the gateway's own CPU time is small).
func (ms *imapMurderSession) copyLiteral(w io.WriteCloser, l imap.LiteralReader) error {
	if l != nil {
		if ms.copyBuf == nil {
			ms.copyBuf = make([]byte, 256<<10)
		}
		if _, err := io.CopyBuffer(w, l, ms.copyBuf); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

// Copy implements imapserver.Session.
func (ms *imapMurderSession) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	sel, err := ms.selected()
	if err != nil {
		return nil, err
	}
	_, server, err := ms.locate(dest)
	if err == errNonexistent {
		return nil, ms.missing(dest)
	}
	if err != nil {
		return nil, err
	}
	if server == sel.server {
		data, err := sel.client.Copy(numSet, dest).Wait()
		return data, ms.backendErr(server, err)
	}
	return ms.copyAcross(sel, numSet, dest, server)
}

// copyAcross copies messages to a mailbox on another backend: FETCH from
// the source, one APPEND per message to the destination. Unlike Cyrus
// proxyd, which sends one MULTIAPPEND, a failure part-way leaves the
// messages appended so far (imapclient has no MULTIAPPEND).
func (ms *imapMurderSession) copyAcross(sel *selection, numSet imap.NumSet, dest, server string) (*imap.CopyData, error) {
	dc, err := ms.backend(server)
	if err != nil {
		return nil, err
	}
	cmd := sel.client.Fetch(numSet, &imap.FetchOptions{
		UID:          true,
		Flags:        true,
		InternalDate: true,
		BodySection:  []*imap.FetchItemBodySection{{Peek: true}},
	})
	data := &imap.CopyData{}
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		buf, err := msg.Collect()
		if err != nil {
			cmd.Close()
			return nil, ms.backendErr(sel.server, err)
		}
		var body []byte
		for _, b := range buf.BodySection {
			body = b.Bytes
		}
		var flags []imap.Flag
		for _, f := range buf.Flags {
			if f != "\\Recent" {
				flags = append(flags, f)
			}
		}
		ac := dc.Append(dest, int64(len(body)), &imap.AppendOptions{Flags: flags, Time: buf.InternalDate})
		if _, err := io.Copy(ac, bytes.NewReader(body)); err != nil {
			ac.Close()
			cmd.Close()
			return nil, ms.backendErr(server, err)
		}
		ac.Close()
		ad, err := ac.Wait()
		if err != nil {
			cmd.Close()
			return nil, ms.backendErr(server, err)
		}
		data.UIDValidity = ad.UIDValidity
		data.SourceUIDs.AddNum(buf.UID)
		data.DestUIDs.AddNum(ad.UID)
	}
	if err := cmd.Close(); err != nil {
		return nil, ms.backendErr(sel.server, err)
	}
	return data, nil
}

// Move implements imapserver.SessionMove.
func (ms *imapMurderSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	sel, err := ms.selected()
	if err != nil {
		return err
	}
	_, server, err := ms.locate(dest)
	if err == errNonexistent {
		return ms.missing(dest)
	}
	if err != nil {
		return err
	}
	if server == sel.server {
		// The backend's EXPUNGEs arrive as updates, written by Poll
		// before the tagged OK.
		data, err := sel.client.Move(numSet, dest).Wait()
		if err != nil {
			return ms.backendErr(server, err)
		}
		src, ok1 := data.SourceUIDs.(imap.UIDSet)
		dst, ok2 := data.DestUIDs.(imap.UIDSet)
		if !ok1 || !ok2 {
			return nil // a backend without UIDPLUS reports no COPYUID
		}
		return w.WriteCopyData(&imap.CopyData{UIDValidity: data.UIDValidity, SourceUIDs: src, DestUIDs: dst})
	}
	data, err := ms.copyAcross(sel, numSet, dest, server)
	if err != nil {
		return err
	}
	if err := w.WriteCopyData(data); err != nil {
		return err
	}
	uids := data.SourceUIDs
	if len(uids) == 0 {
		return nil
	}
	store := sel.client.Store(uids, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil)
	if err := store.Close(); err != nil {
		return ms.backendErr(sel.server, err)
	}
	exp := sel.client.UIDExpunge(uids)
	for seq := exp.Next(); seq != 0; seq = exp.Next() {
		if err := w.WriteExpunge(seq); err != nil {
			exp.Close()
			return err
		}
	}
	return ms.backendErr(sel.server, exp.Close())
}
