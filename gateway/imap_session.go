package gateway

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/rookery/rookery/fsm"
)

// Directory is what a murder-mode session needs from the replica: routing
// plus a walk over every entry for LIST.
type Directory interface {
	Router
	Range(fn func(fsm.Entry) bool)
}

// imapMurderSession is a logged-in IMAP session in murder mode, the
// imapserver.Session the handoff runs. It answers LIST, NAMESPACE and
// mailbox placement from the directory replica and proxies every command
// that names a mailbox to the backend holding it, over per-backend
// imapclient connections opened lazily and logged in as the user (with
// the user's own credentials, or the proxy identity and the user as
// authorization id). The selected mailbox's backend connection carries
// SELECT through EXPUNGE; its unsolicited responses are queued and given
// to the client at the next Poll or during IDLE.
//
// imapserver calls the methods one at a time (Idle runs while the
// connection goroutine waits for DONE), so only the update queue, which
// backend reader goroutines fill, needs a lock.
type imapMurderSession struct {
	s     *Server
	dir   Directory
	names mailboxNamer
	user  User
	home  string // server of the user's INBOX
	creds backendCreds
	conn  *imapserver.Conn
	ctx   context.Context

	backends map[string]*imapclient.Client
	created  map[string]string // internal name -> server, until the replica has it

	sel     *selection
	touched bool // a command went to the selected backend since the last Poll

	mu      sync.Mutex
	updates []update
	notify  chan struct{}

	specialUse map[string][]imap.MailboxAttr // external name -> special-use attrs (nil: not fetched)
	copyBuf    []byte                        // FETCH body relay buffer, allocated on first use
}

// selection is the selected mailbox.
type selection struct {
	server   string
	client   *imapclient.Client
	mailbox  string // as the client named it
	internal string
}

// update is one unsolicited response of the selected backend.
type update struct {
	expunge uint32 // seq of an EXPUNGE, or 0
	exists  uint32 // EXISTS count (with expunge == 0 and flags == nil)
	seq     uint32 // FETCH FLAGS
	uid     imap.UID
	flags   []imap.Flag
	isFlags bool
}

func (s *Server) newMurderSession(ctx context.Context, r route, home *imapclient.Client) *imapMurderSession {
	ms := &imapMurderSession{
		s:        s,
		dir:      s.router.(Directory),
		names:    s.mbNames,
		user:     r.user,
		home:     r.server,
		creds:    r.creds,
		ctx:      ctx,
		backends: map[string]*imapclient.Client{},
		created:  map[string]string{},
		notify:   make(chan struct{}, 1),
	}
	if home != nil {
		ms.backends[r.server] = home
	}
	return ms
}

// handler returns the unsolicited-response handler for the connection to
// server: only the selected backend's responses reach the client.
func (ms *imapMurderSession) handler(server string) *imapclient.UnilateralDataHandler {
	push := func(u update) {
		ms.mu.Lock()
		if ms.sel != nil && ms.sel.server == server {
			ms.updates = append(ms.updates, u)
		}
		ms.mu.Unlock()
		select {
		case ms.notify <- struct{}{}:
		default:
		}
	}
	return &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { push(update{expunge: seq}) },
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				push(update{exists: *d.NumMessages})
			}
		},
		Fetch: func(msg *imapclient.FetchMessageData) {
			buf, err := msg.Collect()
			if err != nil || buf.Flags == nil {
				return
			}
			push(update{seq: buf.SeqNum, uid: buf.UID, flags: buf.Flags, isFlags: true})
		},
	}
}

// backend returns the session's connection to server, logging in on
// first use.
func (ms *imapMurderSession) backend(server string) (*imapclient.Client, error) {
	if c, ok := ms.backends[server]; ok {
		return c, nil
	}
	addr := ms.s.serviceAddr(server, ProtoIMAP)
	if addr == "" {
		ms.s.m.backendErrors.Add(1)
		ms.s.log.Error("no address for backend", "server", server, "proto", ProtoIMAP)
		return nil, errUnavailable
	}
	c, err := ms.s.dialIMAPClient(ms.ctx, addr, ms.creds, ms.handler(server))
	if err != nil {
		ms.s.m.backendErrors.Add(1)
		ms.s.log.Warn("backend login failed", "proto", ProtoIMAP, "user", ms.user.Login(), "server", server, "err", err)
		return nil, errUnavailable
	}
	ms.backends[server] = c
	return c, nil
}

// errUnavailable is the answer while a mailbox is RESERVED or its backend
// cannot be reached: a temporary failure, as Cyrus proxyd gives.
var errUnavailable = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Mailbox unavailable, try again later"}

// errNonexistent words a missing mailbox as Cyrus 3 does (no response
// code).
var errNonexistent = &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Mailbox does not exist"}

// backendErr passes a backend's NO/BAD through and turns anything else (a
// broken connection) into a temporary failure, forgetting the connection
// so the next command dials again.
func (ms *imapMurderSession) backendErr(server string, err error) error {
	if err == nil {
		return nil
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie
	}
	ms.s.log.Warn("backend connection failed", "proto", ProtoIMAP, "user", ms.user.Login(), "server", server, "err", err)
	if c, ok := ms.backends[server]; ok {
		c.Close()
		delete(ms.backends, server)
	}
	if ms.sel != nil && ms.sel.server == server {
		// The selected state lived on that connection; the client cannot
		// go on as if it still had it.
		ms.setSel(nil)
		ms.conn.Bye("Backend connection lost")
	}
	return errUnavailable
}

// locate finds the mailbox a client names: its internal name and server.
func (ms *imapMurderSession) locate(mailbox string) (internal, server string, err error) {
	internal, ok := ms.names.toInternal(ms.user, mailbox)
	if !ok {
		return "", "", errNonexistent
	}
	e, found := ms.dir.Lookup(internal)
	if !found {
		if srv, ok := ms.created[internal]; ok {
			return internal, srv, nil
		}
		if !ms.dir.Ready() {
			return "", "", errUnavailable
		}
		return internal, "", errNonexistent
	}
	delete(ms.created, internal)
	if e.State != fsm.StateActive {
		ms.s.m.routingReserved.Add(1)
		return "", "", errUnavailable
	}
	return internal, e.Server(), nil
}

// missing is the answer for a COPY, MOVE or APPEND target that does not
// exist: [TRYCREATE] only when the user could create it, as Cyrus decides
// (their own hierarchy, or under an existing mailbox where they hold 'k').
func (ms *imapMurderSession) missing(mailbox string) error {
	internal, ok := ms.names.toInternal(ms.user, mailbox)
	if !ok {
		return errNonexistent
	}
	if owner(internal) == ms.user.Inbox() {
		return errTryCreate
	}
	for p := parent(internal); p != ""; p = parent(p) {
		if e, found := ms.dir.Lookup(p); found {
			if strings.ContainsRune(aclRights(e.ACL, ms.user.Login()), 'k') {
				return errTryCreate
			}
			return errNonexistent
		}
	}
	return errNonexistent
}

// route is locate plus the backend connection.
func (ms *imapMurderSession) route(mailbox string) (*imapclient.Client, string, error) {
	_, server, err := ms.locate(mailbox)
	if err != nil {
		return nil, "", err
	}
	c, err := ms.backend(server)
	return c, server, err
}

// Close implements imapserver.Session.
func (ms *imapMurderSession) Close() error {
	for _, c := range ms.backends {
		c.Close()
	}
	ms.backends = map[string]*imapclient.Client{}
	return nil
}

// Login implements imapserver.Session; sessions start logged in.
func (ms *imapMurderSession) Login(string, string) error {
	return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Already logged in"}
}

// Poll implements imapserver.Session: it gives the client what the
// selected backend sent unsolicited, asking it with NOOP first when this
// command did not talk to it (NOOP, CHECK and friends).
func (ms *imapMurderSession) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if ms.sel != nil && !ms.touched {
		if err := ms.sel.client.Noop().Wait(); err != nil {
			return ms.backendErr(ms.sel.server, err)
		}
	}
	ms.touched = false
	return ms.flush(w, allowExpunge)
}

func (ms *imapMurderSession) flush(w *imapserver.UpdateWriter, allowExpunge bool) error {
	ms.mu.Lock()
	pending := ms.updates
	ms.updates = nil
	ms.mu.Unlock()
	for i, u := range pending {
		var err error
		switch {
		case u.expunge != 0:
			if !allowExpunge {
				// Keep it (and what follows, whose numbers assume it)
				// for a command that may expunge.
				ms.mu.Lock()
				ms.updates = append(pending[i:len(pending):len(pending)], ms.updates...)
				ms.mu.Unlock()
				return nil
			}
			err = w.WriteExpunge(u.expunge)
		case u.isFlags:
			err = w.WriteMessageFlags(u.seq, u.uid, u.flags)
		default:
			err = w.WriteNumMessages(u.exists)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Idle implements imapserver.Session: IDLE on the selected backend, with
// its updates passed on as they come.
func (ms *imapMurderSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if ms.sel == nil {
		<-stop
		return nil
	}
	if err := ms.flush(w, true); err != nil {
		return err
	}
	idle, err := ms.sel.client.Idle()
	if err != nil {
		return ms.backendErr(ms.sel.server, err)
	}
	for {
		select {
		case <-ms.notify:
			if err := ms.flush(w, true); err != nil {
				idle.Close()
				return err
			}
		case <-stop:
			idle.Close()
			err := idle.Wait()
			ms.touched = true
			if err != nil {
				return ms.backendErr(ms.sel.server, err)
			}
			return ms.flush(w, true)
		}
	}
}
