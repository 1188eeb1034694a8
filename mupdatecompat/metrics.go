package mupdatecompat

import (
	"strings"
	"time"

	wire "github.com/rookery/rookery/internal/imapwire"
)

// Streams returns the number of UPDATE streams open now.
func (s *Server) Streams() int { return int(s.streams.Load()) }

// FullDumps returns how many UPDATE commands without host arguments (a
// dump of the whole directory, what a Cyrus frontend slave sends at start)
// have been answered since the server started.
func (s *Server) FullDumps() uint64 { return s.fullDumps.Load() }

func (s *Server) countStream(full bool) {
	s.streams.Add(1)
	if full {
		s.fullDumps.Add(1)
	}
}

// noteResult remembers the kind of the last reply of the command being
// dispatched: OK, NO, BAD, or BYE when a stream's NOOP barrier fails.
// Replies written straight to the wire (OK "streaming starts", OK "Noop
// done", STARTTLS and COMPRESS) are all OK, the default.
func (c *conn) noteResult(tag, kind string) {
	if tag != "*" || kind != "OK" {
		c.result = kind
	}
}

// observe reports one dispatched command to Config.ObserveCommand.
func (c *conn) observe(cmd *wire.Command, start time.Time) {
	result := c.result
	c.result = ""
	if c.cfg.ObserveCommand == nil {
		return
	}
	name := strings.ToUpper(cmd.Name)
	if _, ok := commands[name]; !ok {
		name = "UNKNOWN"
	}
	if result == "" {
		result = "ok"
	}
	c.cfg.ObserveCommand(name, strings.ToLower(result), time.Since(start))
}
