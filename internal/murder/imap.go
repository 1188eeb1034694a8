package murder

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// imapConn is the few IMAP4rev1 commands the end-to-end check needs (LOGIN,
// CREATE, LIST, SELECT, STATUS, SEARCH, LOGOUT). It is deliberately tiny: it
// only has to talk to Cyrus with ASCII names.
type imapConn struct {
	conn net.Conn
	br   *bufio.Reader
	n    int
}

// withIMAP logs in to addr, runs fn and logs out. The connection honours
// ctx's deadline and cancellation.
func withIMAP(ctx context.Context, addr, user, pass string, fn func(*imapConn) error) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("imap dial %s: %w", addr, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c := &imapConn{conn: conn, br: bufio.NewReader(conn)}
	greeting, err := c.line()
	if err != nil {
		return fmt.Errorf("imap greeting from %s: %w", addr, err)
	}
	if !strings.HasPrefix(greeting, "* OK") {
		return fmt.Errorf("imap greeting from %s: %q", addr, greeting)
	}
	if _, err := c.cmd("LOGIN " + quote(user) + " " + quote(pass)); err != nil {
		return fmt.Errorf("imap LOGIN %s at %s: %w", user, addr, err)
	}
	if err := fn(c); err != nil {
		return err
	}
	_, err = c.cmd("LOGOUT")
	return err
}

// cmd sends one command and returns its untagged responses (literals
// inlined), or an error for NO/BAD.
func (c *imapConn) cmd(command string) ([]string, error) {
	c.n++
	tag := "e" + strconv.Itoa(c.n)
	if _, err := io.WriteString(c.conn, tag+" "+command+"\r\n"); err != nil {
		return nil, err
	}
	var untagged []string
	for {
		l, err := c.line()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", verb(command), err)
		}
		switch {
		case strings.HasPrefix(l, tag+" OK"):
			return untagged, nil
		case strings.HasPrefix(l, tag+" "):
			return untagged, fmt.Errorf("%s: %s", verb(command), strings.TrimPrefix(l, tag+" "))
		default:
			untagged = append(untagged, l)
		}
	}
}

// line reads one response line, appending any literal it announces.
func (c *imapConn) line() (string, error) {
	var sb strings.Builder
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			return "", err
		}
		l = strings.TrimRight(l, "\r\n")
		sb.WriteString(l)
		i := strings.LastIndexByte(l, '{')
		if i < 0 || !strings.HasSuffix(l, "}") {
			return sb.String(), nil
		}
		n, err := strconv.Atoi(strings.TrimSuffix(l[i+1:len(l)-1], "+"))
		if err != nil || n < 0 || n > 1<<20 {
			return sb.String(), nil
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(c.br, buf); err != nil {
			return "", err
		}
		sb.Write(buf)
	}
}

// number finds "* <n> <word>" (for example EXISTS) in untagged responses.
func number(untagged []string, word string) (int, bool) {
	for _, l := range untagged {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "*" && strings.EqualFold(f[2], word) {
			if n, err := strconv.Atoi(f[1]); err == nil {
				return n, true
			}
		}
	}
	return 0, false
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func verb(command string) string {
	v, _, _ := strings.Cut(command, " ")
	return v
}

// CreateUser creates user/<name> on role's backend as the admin, which
// RESERVEs and ACTIVATEs user.<name> at the backend's MUPDATE server.
func (m *Murder) CreateUser(ctx context.Context, role, name string) error {
	return m.asAdmin(ctx, role, "CREATE user/"+name)
}

// DeleteUser deletes user/<name> on role's backend as the admin, granting
// the admin the 'x' right first (Cyrus admins lack it implicitly).
func (m *Murder) DeleteUser(ctx context.Context, role, name string) error {
	return m.asAdmin(ctx, role, "SETACL user/"+name+" "+AdminUser+" +x", "DELETE user/"+name)
}

// MoveUser moves user/<name> from one backend to another with a real Cyrus
// XFER (an admin "RENAME user/x user/x <to>!default" on the source), which
// copies the data and updates the MUPDATE server (RESERVE at the
// destination, then ACTIVATE).
func (m *Murder) MoveUser(ctx context.Context, from, to, name string) error {
	return m.asAdmin(ctx, from, fmt.Sprintf("RENAME user/%s user/%s %s!default", name, name, m.Name(to)))
}

func (m *Murder) asAdmin(ctx context.Context, role string, commands ...string) error {
	return withIMAP(ctx, m.IMAPAddr(role), AdminUser, AdminPass, func(c *imapConn) error {
		for _, cmd := range commands {
			if _, err := c.cmd(cmd); err != nil {
				return fmt.Errorf("murder: %s on %s: %w", cmd, role, err)
			}
		}
		return nil
	})
}
