package mupdatecompat

import (
	"bufio"
	"compress/flate"
	"crypto/tls"
	"strings"
)

// startTLS runs STARTTLS (docs/mupdate.md §4): refusals with Cyrus's texts,
// `OK "Begin TLS negotiation now"`, the handshake, then the banner again
// without the STARTTLS line. Input the client pipelined after the command
// is discarded, as Cyrus does, so nothing sent in the clear is ever taken
// as sent under TLS.
func (c *conn) startTLS(tag string, _ request) error {
	switch {
	case c.tls:
		return &replyError{"BAD", "Already did a successful Starttls"}
	case c.authed:
		return &replyError{"BAD", "Can't Starttls after authentication"}
	case c.deflate != nil:
		return &replyError{"BAD", "Can't Starttls after Compress"}
	}
	c.w.WriteReply(tag, "OK", "Begin TLS negotiation now")
	if c.flush() != nil {
		return errClosed
	}
	if n := c.br.Buffered(); n > 0 {
		c.br.Discard(n)
		c.log.Info("mupdate STARTTLS: discarded input pipelined before the handshake", "bytes", n)
	}
	tc := tls.Server(c.raw, c.srv.tlsConfig())
	if err := c.handshake(tc); err != nil {
		c.log.Info("mupdate STARTTLS handshake failed", "err", err)
		return errClosed
	}
	c.tls = true
	c.setTransport(tc)
	c.banner()
	if c.flush() != nil {
		return errClosed
	}
	return nil
}

// compress runs COMPRESS "DEFLATE" (docs/mupdate.md §4): after
// `OK "DEFLATE active"` both directions are raw DEFLATE, output flushed with
// a sync flush after each burst. Unlike Cyrus it is refused before login
// (dispatch), because the deflate state costs about 1 MiB per connection.
func (c *conn) compress(tag string, r request) error {
	alg := r.Values[0]
	switch {
	case c.deflate != nil:
		return &replyError{"BAD", "DEFLATE active via COMPRESS"}
	case !strings.EqualFold(alg, "DEFLATE"):
		return &replyError{"NO", "Unknown COMPRESS algorithm: " + alg}
	}
	c.w.WriteReply(tag, "OK", "DEFLATE active")
	if c.flush() != nil {
		return errClosed
	}
	fw, err := flate.NewWriter(deadlineWriter{c}, flate.DefaultCompression)
	if err != nil { // only for an invalid level
		return errClosed
	}
	c.deflate = fw
	c.w.Reset(deflateSink{c})
	// Bytes already buffered are compressed ones: the inflater reads them
	// from the same buffer before the socket.
	c.br = bufio.NewReaderSize(flate.NewReader(c.br), 4096)
	c.setReader(c.br)
	c.log.Debug("mupdate COMPRESS DEFLATE active")
	return nil
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
