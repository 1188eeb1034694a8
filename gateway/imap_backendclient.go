package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// dialIMAPClient connects to a backend's IMAP service and logs in with
// creds (the user's own, or the proxy identity with the user as
// authorization id), for murder-mode sessions. handler receives the
// backend's unsolicited responses. A NO to the login is a *refusal.
func (s *Server) dialIMAPClient(ctx context.Context, addr string, creds backendCreds, handler *imapclient.UnilateralDataHandler) (*imapclient.Client, error) {
	var c *imapclient.Client
	err := s.loginBackend(ctx, addr, func(ctx context.Context, conn net.Conn) error {
		opts := &imapclient.Options{UnilateralDataHandler: handler}
		if s.cfg.Backend.TLS == BackendTLSStartTLS {
			tc := s.beTLS.Clone()
			if tc.ServerName == "" {
				tc.ServerName, _, _ = net.SplitHostPort(addr)
			}
			opts.TLSConfig = tc
			var err error
			if c, err = imapclient.NewStartTLS(conn, opts); err != nil {
				return fmt.Errorf("backend %s STARTTLS: %w", addr, err)
			}
		} else {
			c = imapclient.New(conn, opts)
			if err := c.WaitGreeting(); err != nil {
				c.Close()
				return fmt.Errorf("backend %s greeting: %w", addr, err)
			}
		}
		if err := clientLogin(c, creds, s.cfg.Backend.Auth == AuthPassthrough); err != nil {
			c.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// clientLogin authenticates with SASL PLAIN (the only way to carry an
// authorization id), or LOGIN for passthrough without one when the
// backend offers no PLAIN.
func clientLogin(c *imapclient.Client, creds backendCreds, passthrough bool) error {
	caps := c.Caps()
	var err error
	switch {
	case caps.Has(imap.AuthCap(sasl.Plain)):
		err = c.Authenticate(sasl.NewPlainClient(creds.authzid, creds.authcid, creds.password))
	case passthrough && creds.authzid == "" && !caps.Has(imap.CapLoginDisabled):
		err = c.Login(creds.authcid, creds.password).Wait()
	default:
		return errors.New("backend offers no usable login (need AUTH=PLAIN)")
	}
	var ie *imap.Error
	if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo {
		code := strings.ToUpper(string(ie.Code))
		return &refusal{temporary: code == "UNAVAILABLE" || code == "INUSE", text: truncate(ie.Text), code: code}
	}
	if err != nil {
		return fmt.Errorf("backend login: %w", err)
	}
	return nil
}
