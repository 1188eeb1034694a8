package mupdatecompat

import (
	"bufio"
	"compress/flate"
	"crypto/tls"
	"strings"

	wire "github.com/rookery/rookery/internal/imapwire"
)

// startTLS runs STARTTLS (docs/mupdate.md §4): refusals with Cyrus's texts,
// `OK "Begin TLS negotiation now"`, the handshake, then the banner again
// without the STARTTLS line. Input the client pipelined after the command
// is discarded, as Cyrus does, so nothing sent in the clear is ever taken
// as sent under TLS.
func (c *conn) startTLS(cmd *wire.Command) bool {
	switch {
	case c.tls:
		c.reply(cmd.Tag, "BAD", "Already did a successful Starttls")
		return true
	case c.authed:
		c.reply(cmd.Tag, "BAD", "Can't Starttls after authentication")
		return true
	case c.deflate != nil:
		c.reply(cmd.Tag, "BAD", "Can't Starttls after Compress")
		return true
	}
	c.w.WriteReply(cmd.Tag, "OK", "Begin TLS negotiation now")
	if c.flush() != nil {
		return false
	}
	if n := c.br.Buffered(); n > 0 {
		c.br.Discard(n)
		c.log.Info("mupdate STARTTLS: discarded input pipelined before the handshake", "bytes", n)
	}
	tc := tls.Server(c.raw, c.srv.tlsConfig())
	if err := c.handshake(tc); err != nil {
		c.log.Info("mupdate STARTTLS handshake failed", "err", err)
		return false
	}
	c.tls = true
	c.setTransport(tc)
	c.banner()
	return c.flush() == nil
}

// compress runs COMPRESS "DEFLATE" (docs/mupdate.md §4): after
// `OK "DEFLATE active"` both directions are raw DEFLATE, output flushed with
// a sync flush after each burst. Unlike Cyrus it is refused before login
// (dispatch), because the deflate state costs about 1 MiB per connection.
func (c *conn) compress(cmd *wire.Command) bool {
	alg := cmd.Args[0].Value
	switch {
	case c.deflate != nil:
		c.reply(cmd.Tag, "BAD", "DEFLATE active via COMPRESS")
		return true
	case !strings.EqualFold(alg, "DEFLATE"):
		c.reply(cmd.Tag, "NO", "Unknown COMPRESS algorithm: "+alg)
		return true
	}
	c.w.WriteReply(cmd.Tag, "OK", "DEFLATE active")
	if c.flush() != nil {
		return false
	}
	fw, err := flate.NewWriter(deadlineWriter{c}, flate.DefaultCompression)
	if err != nil { // only for an invalid level
		return false
	}
	c.deflate = fw
	c.w.Reset(deflateSink{c})
	// Bytes already buffered are compressed ones: the inflater reads them
	// from the same buffer before the socket.
	c.br = bufio.NewReaderSize(flate.NewReader(c.br), 4096)
	c.setReader(c.br)
	c.log.Debug("mupdate COMPRESS DEFLATE active")
	return true
}

// deflateSink feeds the compressor and notes that it holds output, so that
// flush emits a sync-flush block only after real output. An empty block
// sent right after `OK "DEFLATE active"` can reach a Cyrus client in the
// same read as that OK line, before it has switched its input to inflate,
// and Cyrus's mupdatetest then hangs.
type deflateSink struct{ c *conn }

func (d deflateSink) Write(p []byte) (int, error) {
	d.c.deflateDirty = true
	return d.c.deflate.Write(p)
}
