package mupdatecompat

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/rookery/rookery/fsm"
	wire "github.com/rookery/rookery/internal/mupdatewire"
)

func (c *conn) reserve(cmd *wire.Command) bool {
	return c.write(cmd.Tag, fsm.Command{Op: fsm.OpReserve, Name: cmd.Args[0].Value, Location: cmd.Args[1].Value})
}

func (c *conn) activate(cmd *wire.Command) bool {
	return c.write(cmd.Tag, fsm.Command{Op: fsm.OpActivate, Name: cmd.Args[0].Value, Location: cmd.Args[1].Value, ACL: cmd.Args[2].Value})
}

func (c *conn) deactivate(cmd *wire.Command) bool {
	return c.write(cmd.Tag, fsm.Command{Op: fsm.OpDeactivate, Name: cmd.Args[0].Value, Location: cmd.Args[1].Value})
}

func (c *conn) delete(cmd *wire.Command) bool {
	return c.write(cmd.Tag, fsm.Command{Op: fsm.OpDelete, Name: cmd.Args[0].Value})
}

// Reply texts for refusals that Cyrus does not have.
const (
	textPermissionDenied = "permission denied"
	textTemporary        = "directory temporarily unavailable, try again"
	textDirectoryError   = "directory error"
)

// write applies a directory write and answers `OK "done"` or NO with the
// text real Cyrus uses for the outcome. Readers never write; everything
// else about who may write what (the server binding of
// mupdate.backend_servers) is decided by the state machine on the
// committed entry (fsm authorize), from the Identity and Bound stamped here.
func (c *conn) write(tag string, fc fsm.Command) bool {
	if !c.id.CanWrite() {
		c.srv.refused.readOnly.Add(1)
		c.log.Warn("mupdate write refused: read-only identity", "op", fc.Op, "name", fc.Name, "identity", c.id.Name)
		c.reply(tag, "NO", textPermissionDenied)
		return true
	}
	fc.Identity = c.id.Name
	fc.Bound = c.id.Server
	fc.Time = time.Now().UnixNano()
	if err := fsm.Validate(fc); err != nil {
		c.log.Debug("mupdate write refused: invalid", "op", fc.Op, "identity", c.id.Name, "err", err)
		c.reply(tag, "NO", fsm.CodeInvalid.Text())
		return true
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.CommandTimeout)
	res, err := c.srv.dir.Apply(ctx, []fsm.Command{fc})
	cancel()
	if err == nil && len(res) != 1 {
		err = errWrongResults
	}
	if err != nil {
		c.log.Warn("mupdate write failed", "op", fc.Op, "name", fc.Name, "identity", c.id.Name, "err", err)
		c.reply(tag, "NO", failText(err))
		return true
	}
	c.log.Debug("mupdate write", "op", fc.Op, "name", fc.Name, "location", fc.Location,
		"identity", c.id.Name, "result", res[0].Code.Text(), "revision", res[0].Revision)
	switch res[0].Code {
	case fsm.CodeOK:
		c.reply(tag, "OK", "done")
	case fsm.CodePermissionDenied:
		c.srv.refused.permissionDenied.Add(1)
		c.log.Warn("mupdate write refused: entry on another server", "op", fc.Op, "name", fc.Name,
			"location", fc.Location, "identity", c.id.Name, "bound", fc.Bound)
		c.reply(tag, "NO", textPermissionDenied)
	default:
		c.reply(tag, "NO", res[0].Code.Text())
	}
	return true
}

type resultError string

func (e resultError) Error() string { return string(e) }

const errWrongResults = resultError("mupdatecompat: directory returned a wrong number of results")

// failText is the NO text for a directory error.
func failText(err error) string {
	if IsTemporary(err) {
		return textTemporary
	}
	return textDirectoryError
}

// sync runs the linearizable barrier before a read; on failure it answers
// NO and returns false.
func (c *conn) sync(tag string) bool {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.CommandTimeout)
	err := c.srv.dir.Sync(ctx)
	cancel()
	if err != nil {
		c.log.Warn("mupdate read barrier failed", "identity", c.id.Name, "err", err)
		c.reply(tag, "NO", failText(err))
		return false
	}
	return true
}

func (c *conn) find(cmd *wire.Command) bool {
	name := cmd.Args[0].Value
	f, ok := c.srv.dir.(Finder)
	if !ok {
		if !c.sync(cmd.Tag) {
			return true
		}
		if e, found := c.srv.dir.Store().Get(name); found {
			c.writeEntry(cmd.Tag, &e)
		}
		c.reply(cmd.Tag, "OK", "Search completed")
		return true
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.CommandTimeout)
	e, found, err := f.Find(ctx, name)
	cancel()
	if err != nil {
		c.log.Warn("mupdate FIND failed", "identity", c.id.Name, "err", err)
		c.reply(cmd.Tag, "NO", failText(err))
		return true
	}
	if found {
		c.writeEntry(cmd.Tag, &e)
	}
	c.reply(cmd.Tag, "OK", "Search completed")
	return true
}

// list answers LIST [prefix]: every entry whose location starts with the
// prefix, bytewise, as Cyrus's strncmp does; ctl_mboxlist -m sends
// "<servername>!".
func (c *conn) list(cmd *wire.Command) bool {
	prefix := ""
	if len(cmd.Args) == 1 {
		prefix = cmd.Args[0].Value
	}
	if !c.sync(cmd.Tag) {
		return true
	}
	view := c.srv.dir.Store().View()
	if !c.scan(cmd.Tag, func(yield func(fsm.Entry) bool) { view.ScanLocation(prefix, yield) }) {
		return false
	}
	c.reply(cmd.Tag, "OK", "list complete")
	return true
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
