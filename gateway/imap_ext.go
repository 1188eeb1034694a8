package gateway

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/rookery/rookery/internal/imapwire"
)

// The commands the interceptor answers (imap_intercept.go): CAPABILITY
// and ID locally, ACL and QUOTA commands on the backend of the mailbox
// they name, through the session's imapclient connections.

// murderCapsAll is what CAPABILITY answers after login: imapserver's
// list plus the extensions served here.
const murderCapsAll = murderCapsAfterLogin + " ACL RIGHTS=kxten QUOTA ID"

// runExtension answers one intercepted command; the result holds every
// response line through the tagged one.
func (ms *imapMurderSession) runExtension(cmd *imapwire.Command) string {
	var b strings.Builder
	err := ms.extension(&b, cmd)
	var ie *imap.Error
	switch {
	case err == nil:
		fmt.Fprintf(&b, "%s OK Completed\r\n", cmd.Tag)
	case errors.As(err, &ie):
		code := ""
		if ie.Code != "" {
			code = "[" + string(ie.Code) + "] "
		}
		fmt.Fprintf(&b, "%s %s %s%s\r\n", cmd.Tag, ie.Type, code, oneLine(ie.Text))
	default:
		fmt.Fprintf(&b, "%s NO %s\r\n", cmd.Tag, oneLine(err.Error()))
	}
	return b.String()
}

var errArgs = &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Wrong arguments"}

func (ms *imapMurderSession) extension(b *strings.Builder, cmd *imapwire.Command) error {
	args := make([]string, len(cmd.Args))
	for i, a := range cmd.Args {
		if !a.IsAString() {
			return errArgs
		}
		args[i] = a.Value
	}
	want := map[string]int{"CAPABILITY": 0, "GETACL": 1, "SETACL": 3, "DELETEACL": 2, "MYRIGHTS": 1, "LISTRIGHTS": 2, "GETQUOTA": 1, "GETQUOTAROOT": 1}
	if n, ok := want[cmd.Name]; ok && len(args) != n {
		return errArgs
	}
	switch cmd.Name {
	case "CAPABILITY":
		fmt.Fprintf(b, "* CAPABILITY %s\r\n", murderCapsAll)
	case "ID":
		b.WriteString("* ID (\"name\" \"Rookery gateway\")\r\n")
	case "GETACL":
		c, server, err := ms.route(args[0])
		if err != nil {
			return err
		}
		data, err := c.GetACL(args[0]).Wait()
		if err != nil {
			return ms.backendErr(server, err)
		}
		ids := make([]string, 0, len(data.Rights))
		for id := range data.Rights {
			ids = append(ids, string(id))
		}
		sort.Strings(ids)
		fmt.Fprintf(b, "* ACL %s", quoted(args[0]))
		for _, id := range ids {
			fmt.Fprintf(b, " %s %s", quoted(id), quoted(string(data.Rights[imap.RightsIdentifier(id)])))
		}
		b.WriteString("\r\n")
	case "SETACL", "DELETEACL":
		c, server, err := ms.route(args[0])
		if err != nil {
			return err
		}
		mod, rights := imap.RightModificationReplace, ""
		if cmd.Name == "SETACL" {
			rights = args[2]
			if strings.HasPrefix(rights, "+") || strings.HasPrefix(rights, "-") {
				mod, rights = imap.RightModification(rights[0]), rights[1:]
			}
		}
		return ms.backendErr(server, c.SetACL(args[0], imap.RightsIdentifier(args[1]), mod, imap.RightSet(rights)).Wait())
	case "MYRIGHTS":
		c, server, err := ms.route(args[0])
		if err != nil {
			return err
		}
		data, err := c.MyRights(args[0]).Wait()
		if err != nil {
			return ms.backendErr(server, err)
		}
		fmt.Fprintf(b, "* MYRIGHTS %s %s\r\n", quoted(args[0]), quoted(string(data.Rights)))
	case "LISTRIGHTS":
		return ms.listRights(b, args[0], args[1])
	case "GETQUOTA":
		c, server, err := ms.route(args[0])
		if err != nil {
			return err
		}
		data, err := c.GetQuota(args[0]).Wait()
		if err != nil {
			return ms.backendErr(server, err)
		}
		writeQuota(b, data.Root, data.Resources)
	case "GETQUOTAROOT":
		c, server, err := ms.route(args[0])
		if err != nil {
			return err
		}
		roots, err := c.GetQuotaRoot(args[0]).Wait()
		if err != nil {
			return ms.backendErr(server, err)
		}
		fmt.Fprintf(b, "* QUOTAROOT %s", quoted(args[0]))
		for _, r := range roots {
			fmt.Fprintf(b, " %s", quoted(r.Root))
		}
		b.WriteString("\r\n")
		for _, r := range roots {
			writeQuota(b, r.Root, r.Resources)
		}
	}
	return nil
}

// listRights answers LISTRIGHTS as Cyrus does, from the replica (imapclient
// has no LISTRIGHTS): the owner of a personal mailbox always holds the
// implicit owner rights, every other right is grantable on its own.
func (ms *imapMurderSession) listRights(b *strings.Builder, mailbox, id string) error {
	internal, _, err := ms.locate(mailbox)
	if err != nil {
		return err
	}
	required := `""`
	if inbox := owner(internal); inbox != "" {
		if u, err := ms.s.names.ParseLogin(id); err == nil && u.Inbox() == inbox {
			required = implicitOwnerRights
		}
	}
	fmt.Fprintf(b, "* LISTRIGHTS %s %s %s l r s w i p k x t e c d a n 0 1 2 3 4 5 6 7 8 9\r\n", quoted(mailbox), quoted(id), required)
	return nil
}

func writeQuota(b *strings.Builder, root string, res map[imap.QuotaResourceType]imapclient.QuotaResourceData) {
	names := make([]string, 0, len(res))
	for t := range res {
		names = append(names, string(t))
	}
	sort.Strings(names)
	fmt.Fprintf(b, "* QUOTA %s (", quoted(root))
	for i, n := range names {
		if i > 0 {
			b.WriteString(" ")
		}
		r := res[imap.QuotaResourceType(n)]
		fmt.Fprintf(b, "%s %d %d", n, r.Usage, r.Limit)
	}
	b.WriteString(")\r\n")
}

// quoted renders s as an IMAP quoted string (CR, LF and NUL, which no
// mailbox name or identifier holds, are dropped).
func quoted(s string) string {
	return imapwire.Quote(strings.NewReplacer("\r", "", "\n", "", "\x00", "").Replace(s))
}

func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
