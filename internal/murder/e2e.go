package murder

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/rookery/rookery/internal/mupdateclient"
)

// CheckE2E proves the murder works end to end through the MUPDATE server at
// mupdateAddr (the murder's own master, or Rookery when the murder's
// backends and frontend were pointed at it). It is the Go form of the
// fixture's e2e-check.py and needs roles be1 and fe:
//
//  1. an admin CREATE user/alice/<tag> on be1 succeeds;
//  2. MUPDATE FIND user.alice.<tag> at mupdateAddr answers "<be1>!default";
//  3. the frontend slave learns it: alice's LIST through fe shows it;
//  4. SELECT INBOX through fe works (the login is proxied to be1);
//  5. a message delivered through fe's LMTP proxy is accepted;
//  6. it shows in fe's STATUS INBOX and in a SEARCH on be1 directly.
//
// It returns the tag it used (the mailbox is left in place).
func (m *Murder) CheckE2E(ctx context.Context, mupdateAddr string) (string, error) {
	tag := fmt.Sprintf("e2e%d", time.Now().UnixNano())
	be1 := m.IMAPAddr(RoleBE1)

	// 1. create on the backend.
	if err := withIMAP(ctx, be1, AdminUser, AdminPass, func(c *imapConn) error {
		_, _ = c.cmd("CREATE user/alice") // may exist already
		if _, err := c.cmd("CREATE user/alice/" + tag); err != nil {
			return fmt.Errorf("be1 CREATE user/alice/%s: %w", tag, err)
		}
		return nil
	}); err != nil {
		return tag, err
	}

	// 2. the MUPDATE server knows it, at be1.
	if err := checkFind(ctx, mupdateAddr, "user.alice."+tag, m.Name(RoleBE1)+"!default"); err != nil {
		return tag, err
	}

	// 3+4. the frontend slave learns it; alice is proxied to be1.
	var before int
	if err := poll(ctx, 15*time.Second, func() error {
		return withIMAP(ctx, m.IMAPAddr(RoleFE), "alice", "alicepw", func(c *imapConn) error {
			list, err := c.cmd(`LIST "" "*"`)
			if err != nil {
				return fmt.Errorf("fe LIST as alice: %w", err)
			}
			if !listHas(list, tag) {
				return fmt.Errorf("fe LIST as alice does not show %s yet (slave has not learned it)", tag)
			}
			sel, err := c.cmd("SELECT INBOX")
			if err != nil {
				return fmt.Errorf("fe SELECT INBOX as alice (proxied to be1): %w", err)
			}
			n, ok := number(sel, "EXISTS")
			if !ok {
				return fmt.Errorf("fe SELECT INBOX as alice: no EXISTS in %q", sel)
			}
			before = n
			return nil
		})
	}); err != nil {
		return tag, err
	}

	// 5. deliver through the frontend's LMTP proxy.
	if err := deliverLMTP(ctx, m.LMTPAddr(RoleFE), "alice", tag); err != nil {
		return tag, err
	}

	// 6. visible through the frontend and on the backend itself.
	if err := poll(ctx, 10*time.Second, func() error {
		return withIMAP(ctx, m.IMAPAddr(RoleFE), "alice", "alicepw", func(c *imapConn) error {
			st, err := c.cmd("STATUS INBOX (MESSAGES)")
			if err != nil {
				return fmt.Errorf("fe STATUS INBOX: %w", err)
			}
			want := fmt.Sprintf("(MESSAGES %d)", before+1)
			if len(st) == 0 || !strings.Contains(st[0], want) {
				return fmt.Errorf("fe STATUS INBOX: %q, want %s", st, want)
			}
			return nil
		})
	}); err != nil {
		return tag, err
	}
	return tag, withIMAP(ctx, be1, "alice", "alicepw", func(c *imapConn) error {
		if _, err := c.cmd("SELECT INBOX"); err != nil {
			return fmt.Errorf("be1 SELECT INBOX as alice: %w", err)
		}
		res, err := c.cmd("SEARCH SUBJECT " + quote(tag))
		if err != nil {
			return fmt.Errorf("be1 SEARCH SUBJECT %s: %w", tag, err)
		}
		if len(res) == 0 || len(strings.Fields(strings.TrimPrefix(res[0], "* SEARCH"))) == 0 {
			return fmt.Errorf("message %s is not in alice's INBOX on be1 (SEARCH: %q)", tag, res)
		}
		return nil
	})
}

func checkFind(ctx context.Context, addr, name, wantLoc string) error {
	c, err := mupdateclient.Dial(ctx, addr, mupdateclient.DefaultConfig())
	if err != nil {
		return err
	}
	defer c.Close()
	e, ok, err := c.Find(ctx, name)
	if err != nil {
		return err
	}
	if !ok || e.Reserved || e.Location != wantLoc {
		return fmt.Errorf("MUPDATE FIND %s at %s = %+v (found=%v), want active at %s", name, addr, e, ok, wantLoc)
	}
	return c.Logout(ctx)
}

func listHas(list []string, tag string) bool {
	for _, l := range list {
		if strings.HasPrefix(l, "* LIST ") && strings.Contains(l, tag) {
			return true
		}
	}
	return false
}

func deliverLMTP(ctx context.Context, addr, rcpt, subject string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("lmtp dial %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("e2e"); err != nil {
		return fmt.Errorf("lmtp LHLO: %w", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", AdminUser, AdminPass)); err != nil {
		return fmt.Errorf("lmtp AUTH PLAIN %s: %w", AdminUser, err)
	}
	if err := c.Mail("bob@example.com", nil); err != nil {
		return fmt.Errorf("lmtp MAIL FROM: %w", err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return fmt.Errorf("lmtp RCPT TO %s: %w", rcpt, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("lmtp DATA: %w", err)
	}
	msg := "From: bob@example.com\r\nTo: " + rcpt + "@example.com\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + subject + "@example>\r\n\r\nhello\r\n"
	if _, err := w.Write([]byte(msg)); err != nil {
		return fmt.Errorf("lmtp DATA write: %w", err)
	}
	if _, err := w.CloseWithLMTPResponse(); err != nil {
		return fmt.Errorf("lmtp delivery to %s: %w", rcpt, err)
	}
	return c.Quit()
}

// poll calls fn until it succeeds or limit (or ctx) runs out, returning the
// last error.
func poll(ctx context.Context, limit time.Duration, fn func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}
