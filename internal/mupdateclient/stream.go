package mupdateclient

import (
	"context"
	"fmt"
	"strconv"

	"github.com/rookery/rookery/internal/imapwire"
)

// Update sends UPDATE and returns the initial dump (every entry, in server
// order) once the server says "streaming starts". After that, read the
// stream with Next; only NOOP and LOGOUT are legal on the connection.
func (c *Client) Update(ctx context.Context) ([]Entry, error) {
	// U01 is the tag the Cyrus frontend slave uses.
	data, err := c.roundTrip(ctx, imapwire.Command{Tag: "U01", Name: "UPDATE"})
	if err != nil {
		return nil, err
	}
	return entries(data)
}

// SendNoop writes a NOOP on a streaming connection without waiting; its OK
// arrives through Next. It returns the tag used. Safe to call while another
// goroutine is blocked in Next.
func (c *Client) SendNoop(ctx context.Context) (string, error) {
	c.wmu.Lock()
	c.noopN++
	tag := "N" + strconv.Itoa(c.noopN)
	c.wmu.Unlock()
	return tag, c.write(ctx, imapwire.Command{Tag: tag, Name: "NOOP"})
}

// Next returns the next response on a streaming connection: a streamed
// MAILBOX, RESERVE or DELETE (tag U01), or the status answer to a NOOP.
func (c *Client) Next(ctx context.Context) (imapwire.Response, error) {
	if err := c.broken(); err != nil {
		return imapwire.Response{}, err
	}
	defer c.watch(ctx, true, false)()
	r, err := c.rd.ReadResponse()
	if err != nil {
		return imapwire.Response{}, c.fail(ctx, fmt.Errorf("mupdate: reading stream: %w", err))
	}
	if r.Tag == "*" && r.Kind == imapwire.KindBYE {
		return r, c.fail(ctx, fmt.Errorf("mupdate: stream closed by server: BYE %q", r.Text))
	}
	return r, nil
}
