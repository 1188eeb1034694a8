package e2e

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"time"
)

// deliverLMTP delivers one message to every recipient in one LMTP
// transaction and requires a 2xx reply per recipient after DATA.
func deliverLMTP(addr string, rcpts []string, subject string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(conn)
	reply := func() (string, error) {
		var last string
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return last, err
			}
			last = strings.TrimRight(l, "\r\n")
			if len(last) < 4 || last[3] != '-' {
				return last, nil
			}
		}
	}
	expect := func(cmd, want string) error {
		if cmd != "" {
			fmt.Fprintf(conn, "%s\r\n", cmd)
		}
		l, err := reply()
		if err != nil || !strings.HasPrefix(l, want) {
			return fmt.Errorf("LMTP %q: got %q, %v", cmd, l, err)
		}
		return nil
	}
	// Cyrus's LMTP proxy on the frontend wants an authenticated admin.
	plain := base64.StdEncoding.EncodeToString([]byte("\x00admin\x00adminpw"))
	steps := [][2]string{{"", "220"}, {"LHLO rookery-e2e", "250"}, {"AUTH PLAIN " + plain, "235"}, {"MAIL FROM:<e2e@example.org>", "250"}}
	for _, rc := range rcpts {
		steps = append(steps, [2]string{"RCPT TO:<" + rc + ">", "250"})
	}
	steps = append(steps, [2]string{"DATA", "354"})
	for _, s := range steps {
		if err := expect(s[0], s[1]); err != nil {
			return err
		}
	}
	fmt.Fprintf(conn, "From: e2e@example.org\r\nSubject: %s\r\n\r\nhello\r\n.\r\n", subject)
	for _, rc := range rcpts {
		if err := expect("", "250"); err != nil {
			return fmt.Errorf("delivery to %s: %w", rc, err)
		}
	}
	return expect("QUIT", "221")
}

// deliverGatewayLMTP delivers one message to one recipient through the
// gateway's LMTP listener (the MTA side is trusted: no AUTH).
func deliverGatewayLMTP(addr, rcpt, subject string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	for _, step := range [][2]string{{"", "220"}, {"LHLO e2e", "250"}, {"MAIL FROM:<e2e@example.org>", "250"}, {"RCPT TO:<" + rcpt + ">", "250"}, {"DATA", "354"},
		{"From: e2e@example.org\r\nSubject: " + subject + "\r\n\r\nhello\r\n.", "250"}, {"QUIT", "221"}} {
		if step[0] != "" {
			fmt.Fprintf(conn, "%s\r\n", step[0])
		}
		var last string
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("LMTP %q: %w", step[0], err)
			}
			last = strings.TrimRight(l, "\r\n")
			if len(last) < 4 || last[3] != '-' {
				break
			}
		}
		if !strings.HasPrefix(last, step[1]) {
			return fmt.Errorf("LMTP %q: got %q", step[0], last)
		}
	}
	return nil
}
