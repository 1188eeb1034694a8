package gateway

import (
	"io"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/rookery/rookery/fsm"
)

// Authenticated-state commands of the murder session: each either names
// one mailbox and goes to its backend, or is answered from the replica
// (LIST, NAMESPACE), or goes to the user's INBOX backend (subscriptions,
// which Cyrus keeps per user on that backend).

func (ms *imapMurderSession) setSel(sel *selection) {
	ms.mu.Lock()
	ms.sel = sel
	ms.updates = nil
	ms.mu.Unlock()
}

// Select implements imapserver.Session.
func (ms *imapMurderSession) Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error) {
	internal, server, err := ms.locate(mailbox)
	if err != nil {
		return nil, err
	}
	c, err := ms.backend(server)
	if err != nil {
		return nil, err
	}
	ms.setSel(&selection{server: server, client: c, mailbox: mailbox, internal: internal})
	data, err := c.Select(mailbox, options).Wait()
	if err != nil {
		ms.setSel(nil)
		return nil, ms.backendErr(server, err)
	}
	ms.touched = true
	return data, nil
}

// Unselect implements imapserver.Session.
func (ms *imapMurderSession) Unselect() error {
	sel := ms.sel
	ms.setSel(nil)
	if sel == nil {
		return nil
	}
	return ms.backendErr(sel.server, sel.client.Unselect().Wait())
}

// Create implements imapserver.Session. The mailbox goes where Cyrus puts
// it: beside its nearest existing parent, in a user's hierarchy on that
// user's INBOX backend, otherwise on imap.default_server (the user's
// INBOX backend when unset).
func (ms *imapMurderSession) Create(mailbox string, options *imap.CreateOptions) error {
	internal, ok := ms.names.toInternal(ms.user, mailbox)
	if !ok {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Invalid mailbox name"}
	}
	if _, found := ms.dir.Lookup(internal); found {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox already exists"}
	}
	server, err := ms.placement(internal)
	if err != nil {
		return err
	}
	c, err := ms.backend(server)
	if err != nil {
		return err
	}
	if err := c.Create(mailbox, options).Wait(); err != nil {
		return ms.backendErr(server, err)
	}
	ms.created[internal] = server
	ms.specialUse = nil
	ms.s.log.Info("mailbox created", "user", ms.user.Login(), "mailbox", internal, "server", server)
	return nil
}

func (ms *imapMurderSession) placement(internal string) (string, error) {
	for p := parent(internal); p != ""; p = parent(p) {
		if e, ok := ms.dir.Lookup(p); ok {
			if e.State != fsm.StateActive {
				return "", errUnavailable
			}
			return e.Server(), nil
		}
		if srv, ok := ms.created[p]; ok {
			return srv, nil
		}
	}
	if inbox := owner(internal); inbox != "" {
		e, ok := ms.dir.Lookup(inbox)
		if !ok {
			return "", &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNoPerm, Text: "Permission denied"}
		}
		return e.Server(), nil
	}
	if d := ms.s.cfg.IMAP.DefaultServer; d != "" {
		return d, nil
	}
	return ms.home, nil
}

// Delete implements imapserver.Session.
func (ms *imapMurderSession) Delete(mailbox string) error {
	c, server, err := ms.route(mailbox)
	if err != nil {
		return err
	}
	if err := c.Delete(mailbox).Wait(); err != nil {
		return ms.backendErr(server, err)
	}
	if internal, ok := ms.names.toInternal(ms.user, mailbox); ok {
		delete(ms.created, internal)
	}
	ms.specialUse = nil
	return nil
}

// Rename implements imapserver.Session. The backend holding the mailbox
// renames it and keeps it, wherever the new parent lives, as Cyrus does
// for a user's RENAME; moving between backends (XFER) is an admin
// operation done on the backends.
func (ms *imapMurderSession) Rename(mailbox, newName string, options *imap.RenameOptions) error {
	c, server, err := ms.route(mailbox)
	if err != nil {
		return err
	}
	if err := c.Rename(mailbox, newName, options).Wait(); err != nil {
		return ms.backendErr(server, err)
	}
	if internal, ok := ms.names.toInternal(ms.user, newName); ok {
		ms.created[internal] = server
	}
	ms.specialUse = nil
	return nil
}

// Subscribe implements imapserver.Session.
func (ms *imapMurderSession) Subscribe(mailbox string) error {
	c, err := ms.backend(ms.home)
	if err != nil {
		return err
	}
	return ms.backendErr(ms.home, c.Subscribe(mailbox).Wait())
}

// Unsubscribe implements imapserver.Session.
func (ms *imapMurderSession) Unsubscribe(mailbox string) error {
	c, err := ms.backend(ms.home)
	if err != nil {
		return err
	}
	return ms.backendErr(ms.home, c.Unsubscribe(mailbox).Wait())
}

// Namespace implements imapserver.SessionNamespace from the settings.
func (ms *imapMurderSession) Namespace() (*imap.NamespaceData, error) {
	return ms.names.namespace(), nil
}

// Status implements imapserver.Session.
func (ms *imapMurderSession) Status(mailbox string, options *imap.StatusOptions) (*imap.StatusData, error) {
	c, server, err := ms.route(mailbox)
	if err != nil {
		return nil, err
	}
	if ms.sel != nil && ms.sel.client == c {
		ms.touched = true
	}
	data, err := c.Status(mailbox, options).Wait()
	return data, ms.backendErr(server, err)
}

// Append implements imapserver.Session, streaming the message to the
// backend.
func (ms *imapMurderSession) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	c, server, err := ms.route(mailbox)
	if err != nil {
		io.Copy(io.Discard, r)
		if err == errNonexistent {
			return nil, ms.missing(mailbox)
		}
		return nil, err
	}
	if ms.sel != nil && ms.sel.client == c {
		ms.touched = true
	}
	cmd := c.Append(mailbox, r.Size(), options)
	if _, err := io.Copy(cmd, r); err != nil {
		cmd.Close()
		cmd.Wait()
		return nil, ms.backendErr(server, err)
	}
	if err := cmd.Close(); err != nil {
		return nil, ms.backendErr(server, err)
	}
	data, err := cmd.Wait()
	return data, ms.backendErr(server, err)
}

var errTryCreate = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "Mailbox does not exist"}

// List implements imapserver.Session. LIST is answered from the replica:
// every mailbox of the user's domain the user may look up (the 'l' right,
// or their own), with \HasChildren/\HasNoChildren from the replica and
// special-use attributes from the user's INBOX backend. Subscriptions
// (LSUB, LIST (SUBSCRIBED)) live on the INBOX backend, which answers.
func (ms *imapMurderSession) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if options.SelectSubscribed {
		return ms.listSubscribed(w, ref, patterns, options)
	}
	delim := rune(ms.names.sep)
	type found struct {
		name     string
		noselect bool
	}
	var out []found
	visible := map[string]bool{}
	hasChildren := map[string]bool{}
	ancestors := map[string]bool{} // levels above a visible mailbox a pattern stops at
	inbox := ms.user.Inbox()
	identity := ms.user.Login()
	ms.dir.Range(func(e fsm.Entry) bool {
		if e.State != fsm.StateActive || !mayLookup(identity, inbox, e.Name, e.ACL) {
			return true
		}
		name, ok := ms.names.toExternal(ms.user, e.Name)
		if !ok {
			return true
		}
		visible[name] = true
		for i := strings.IndexByte(name, byte(delim)); i > 0; i = nextSep(name, i, byte(delim)) {
			hasChildren[name[:i]] = true
		}
		for _, pat := range patterns {
			if imapserver.MatchList(name, delim, ref, pat) {
				out = append(out, found{name: name})
				break
			}
			// RFC 3501 LIST: a '%' stopping above an existing mailbox
			// returns that level as \Noselect.
			for i := strings.IndexByte(name, byte(delim)); i > 0; i = nextSep(name, i, byte(delim)) {
				if imapserver.MatchList(name[:i], delim, ref, pat) {
					ancestors[name[:i]] = true
				}
			}
		}
		return true
	})
	for a := range ancestors {
		if !visible[a] {
			out = append(out, found{name: a, noselect: true})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i].name == "INBOX") != (out[j].name == "INBOX") {
			return out[i].name == "INBOX"
		}
		return out[i].name < out[j].name
	})
	var subs map[string]bool
	if options.ReturnSubscribed {
		var err error
		if subs, err = ms.subscriptions(); err != nil {
			return err
		}
	}
	var special map[string][]imap.MailboxAttr
	if options.ReturnSpecialUse || !options.SelectSpecialUse {
		special = ms.specialUseAttrs()
	}
	for _, f := range out {
		attrs := []imap.MailboxAttr{imap.MailboxAttrHasNoChildren}
		if hasChildren[f.name] {
			attrs[0] = imap.MailboxAttrHasChildren
		}
		if f.noselect {
			attrs = []imap.MailboxAttr{imap.MailboxAttrNoSelect, imap.MailboxAttrHasChildren}
		}
		su := special[f.name]
		if options.SelectSpecialUse && len(su) == 0 {
			continue
		}
		attrs = append(attrs, su...)
		if subs[f.name] {
			attrs = append(attrs, imap.MailboxAttrSubscribed)
		}
		data := &imap.ListData{Attrs: attrs, Delim: delim, Mailbox: f.name}
		if options.ReturnStatus != nil && !f.noselect {
			if st, err := ms.Status(f.name, options.ReturnStatus); err == nil {
				data.Status = st
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// nextSep returns the index of the next delimiter after i, or -1.
func nextSep(name string, i int, delim byte) int {
	j := strings.IndexByte(name[i+1:], delim)
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

func (ms *imapMurderSession) listSubscribed(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	c, err := ms.backend(ms.home)
	if err != nil {
		return err
	}
	for _, pat := range patterns {
		list, err := c.List(ref, pat, options).Collect()
		if err != nil {
			return ms.backendErr(ms.home, err)
		}
		for _, d := range list {
			if err := w.WriteList(d); err != nil {
				return err
			}
		}
	}
	return nil
}

func (ms *imapMurderSession) subscriptions() (map[string]bool, error) {
	c, err := ms.backend(ms.home)
	if err != nil {
		return nil, err
	}
	list, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		return nil, ms.backendErr(ms.home, err)
	}
	subs := map[string]bool{}
	for _, d := range list {
		subs[d.Mailbox] = true
	}
	return subs, nil
}

// specialUseAttrs returns the special-use attributes of the user's
// mailboxes as the INBOX backend reports them (Cyrus keeps them per user
// there), fetched once per session and after changes.
func (ms *imapMurderSession) specialUseAttrs() map[string][]imap.MailboxAttr {
	if ms.specialUse != nil {
		return ms.specialUse
	}
	ms.specialUse = map[string][]imap.MailboxAttr{}
	c, err := ms.backend(ms.home)
	if err != nil || !c.Caps().Has(imap.CapSpecialUse) {
		return ms.specialUse
	}
	list, err := c.List("", "*", &imap.ListOptions{SelectSpecialUse: true}).Collect()
	if err != nil {
		ms.backendErr(ms.home, err)
		return ms.specialUse
	}
	for _, d := range list {
		for _, a := range d.Attrs {
			if isSpecialUse(a) {
				ms.specialUse[d.Mailbox] = append(ms.specialUse[d.Mailbox], a)
			}
		}
	}
	return ms.specialUse
}

func isSpecialUse(a imap.MailboxAttr) bool {
	switch a {
	case imap.MailboxAttrAll, imap.MailboxAttrArchive, imap.MailboxAttrDrafts, imap.MailboxAttrFlagged,
		imap.MailboxAttrJunk, imap.MailboxAttrSent, imap.MailboxAttrTrash, imap.MailboxAttrImportant:
		return true
	}
	return false
}
