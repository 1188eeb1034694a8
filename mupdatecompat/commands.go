package mupdatecompat

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
	wire "github.com/rookery/rookery/internal/imapwire"
)

// request holds a directory command's arguments by meaning; dispatch fills
// it from the positional arguments as the command's layout says.
type request struct {
	Name, Location, ACL string
	Hosts               []string // UPDATE's PARTIAL-UPDATE servers
	Values              []string // a session command's arguments as sent
}

// requestOf fills a request from args by layout: one letter per argument,
// n name, l location, a ACL; h hosts and v values take every remaining
// argument.
func requestOf(layout string, args []wire.Arg) request {
	var r request
	for i, a := range args {
		switch layout[min(i, len(layout)-1)] {
		case 'n':
			r.Name = a.Value
		case 'l':
			r.Location = a.Value
		case 'a':
			r.ACL = a.Value
		case 'h':
			r.Hosts = append(r.Hosts, a.Value)
		case 'v':
			r.Values = append(r.Values, a.Value)
		}
	}
	return r
}

// replyError is a refusal that is not the directory's: its reply kind and
// text are what Cyrus sends.
type replyError struct{ kind, text string }

func (e *replyError) Error() string { return e.kind + " " + e.text }

var errBadArguments = &replyError{"BAD", "Badly formed arguments"}

// errClosed ends the session: the connection failed while writing, or the
// command ended it.
var errClosed = errors.New("mupdatecompat: connection failed")

// errReplied means the command has already sent what it answers.
var errReplied = errors.New("mupdatecompat: already answered")

// Reply texts for refusals that Cyrus does not have.
const (
	textTemporary      = "directory temporarily unavailable, try again"
	textDirectoryError = "directory error"
)

// cyrusText is the NO text real Cyrus sends for each directory refusal.
var cyrusText = map[directory.Kind]string{
	directory.KindPermissionDenied: "permission denied",
	directory.KindInvalid:          "invalid command",
	directory.KindNotFound:         "mailbox doesn't exist",
	directory.KindExists:           "mailbox already exists",
	directory.KindNotActive:        "mailbox not currently active",
	directory.KindConflict:         "mailbox changed since the given revision",
	directory.KindUnavailable:      textTemporary,
}

// answer renders a directory command's outcome as its tagged reply, the
// one place where a directory error becomes Cyrus's words: OK with the
// command's text, the replyError's own reply, or NO. false ends the
// session.
func (c *conn) answer(tag, ok string, err error) bool {
	var re *replyError
	var de *directory.Error
	switch {
	case err == nil:
		if ok != "" {
			c.reply(tag, "OK", ok)
		}
		return true
	case errors.Is(err, errClosed):
		return false
	case errors.Is(err, errReplied):
		return true
	case errors.As(err, &re):
		c.reply(tag, re.kind, re.text)
		return true
	case !errors.As(err, &de):
		de = &directory.Error{Err: err}
	}
	text, known := cyrusText[de.Kind]
	switch {
	case errors.Is(err, directory.ErrReadOnly):
		c.srv.refused.readOnly.Add(1)
		c.log.Warn("mupdate write refused: read-only identity", "op", de.Op, "name", de.Name, "identity", c.id.Name)
	case de.Kind == directory.KindPermissionDenied:
		c.srv.refused.permissionDenied.Add(1)
		c.log.Warn("mupdate write refused: entry on another server", "op", de.Op, "name", de.Name,
			"identity", c.id.Name, "bound", c.id.Server)
	case de.Kind == directory.KindUnavailable || !known:
		c.log.Warn("mupdate command failed", "op", de.Op, "name", de.Name, "identity", c.id.Name, "err", err)
	default:
		c.log.Debug("mupdate command refused", "op", de.Op, "name", de.Name, "identity", c.id.Name, "err", err)
	}
	if !known {
		text = textDirectoryError
	}
	c.reply(tag, "NO", text)
	return true
}

func (c *conn) reserve(_ string, r request) error {
	return c.write(fsm.Command{Op: fsm.OpReserve, Name: r.Name, Location: r.Location})
}

func (c *conn) activate(_ string, r request) error {
	return c.write(fsm.Command{Op: fsm.OpActivate, Name: r.Name, Location: r.Location, ACL: r.ACL})
}

func (c *conn) deactivate(_ string, r request) error {
	return c.write(fsm.Command{Op: fsm.OpDeactivate, Name: r.Name, Location: r.Location})
}

func (c *conn) delete(_ string, r request) error {
	return c.write(fsm.Command{Op: fsm.OpDelete, Name: r.Name})
}

// write hands a directory write to the service as this session's
// identity; who may write what is decided there and by the state machine.
func (c *conn) write(fc fsm.Command) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.CommandTimeout)
	defer cancel()
	res, err := c.srv.dir.WriteCommitted(ctx, directory.Caller{Name: c.id.Name, Server: c.id.Server, Writer: c.id.CanWrite()}, fc)
	if err == nil {
		err = res[0].Err
		result := "done" // the operator's view of who wrote what (e2e TestXFERBetweenBoundBackends reads it)
		if err != nil {
			result = err.Error()
		}
		c.log.Debug("mupdate write", "op", fc.Op, "name", fc.Name, "location", fc.Location,
			"identity", c.id.Name, "result", result, "revision", res[0].Revision)
	}
	return err
}

// view is a linearizable view of the directory, bounded by CommandTimeout.
func (c *conn) view() (*fsm.View, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.CommandTimeout)
	defer cancel()
	return c.srv.dir.View(ctx, directory.Linearizable)
}

func (c *conn) find(tag string, r request) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.CommandTimeout)
	e, found, err := c.srv.dir.Get(ctx, r.Name)
	cancel()
	if err == nil && found {
		c.writeEntry(tag, &e)
	}
	return err
}

// list answers LIST [prefix]: every entry whose location starts with the
// prefix, bytewise, as Cyrus's strncmp does; ctl_mboxlist -m sends
// "<servername>!".
func (c *conn) list(tag string, r request) error {
	view, err := c.view()
	if err != nil {
		return err
	}
	if !c.scan(tag, func(yield func(fsm.Entry) bool) { view.ScanLocation(r.Location, yield) }) {
		return errClosed
	}
	return nil
}

// scan writes the entries iter yields as data lines, in the order of the
// session's profile; false if the connection failed.
func (c *conn) scan(tag string, iter func(yield func(fsm.Entry) bool)) bool {
	var err error
	if c.profile.Order != OrderBytewise {
		iter(func(e fsm.Entry) bool {
			err = c.writeEntry(tag, &e)
			return err == nil
		})
		return err == nil
	}
	var es []fsm.Entry
	iter(func(e fsm.Entry) bool {
		es = append(es, e)
		return true
	})
	slices.SortFunc(es, func(a, b fsm.Entry) int { return strings.Compare(a.Name, b.Name) })
	for i := range es {
		if err = c.writeEntry(tag, &es[i]); err != nil {
			return false
		}
	}
	return true
}
