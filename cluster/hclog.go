package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// hclogAdapter routes hashicorp/raft's hclog output into the node's
// slog.Logger, so one process has one log stream and one level setting.
// hclog's Trace maps below slog's Debug; everything else maps one to one.
type hclogAdapter struct {
	l     *slog.Logger
	name  string
	args  []any
	level hclog.Level // hclog.NoLevel: defer entirely to the slog handler
}

func newHclog(l *slog.Logger, name string) hclog.Logger {
	return &hclogAdapter{l: l, name: name}
}

// slogTrace sits below slog.LevelDebug; raft's trace output is noise unless
// asked for explicitly.
const slogTrace = slog.LevelDebug - 4

func toSlogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slogTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *hclogAdapter) enabled(level hclog.Level) bool {
	if h.level == hclog.Off {
		return false
	}
	if h.level != hclog.NoLevel && level < h.level {
		return false
	}
	return h.l.Enabled(context.Background(), toSlogLevel(level))
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Error && shutdownNoise(msg, args) {
		level = hclog.Debug
	}
	if !h.enabled(level) {
		return
	}
	all := make([]any, 0, len(h.args)+len(args)+2)
	if h.name != "" {
		// "subsystem", not "component": the node's logger already carries
		// component=cluster, and a second key of the same name confuses
		// every log processor.
		all = append(all, "subsystem", h.name)
	}
	all = append(all, h.args...)
	for _, a := range args {
		all = append(all, formatArg(a))
	}
	h.l.Log(context.Background(), toSlogLevel(level), msg, all...)
}

// shutdownNoise recognises what raft's network transport logs for each
// inbound connection it drops while shutting down ("failed to decode
// incoming command" with ErrTransportShutdown). A clean shutdown is not an
// error; such lines are demoted to debug. The same message with any other
// error (a peer sending garbage) stays an error.
func shutdownNoise(msg string, args []any) bool {
	if msg != "failed to decode incoming command" {
		return false
	}
	for _, a := range args {
		if err, ok := a.(error); ok && errors.Is(err, raft.ErrTransportShutdown) {
			return true
		}
	}
	return false
}

// formatArg renders hclog.Fmt values (raft logs its configuration with
// them) the way hclog would, instead of as their raw format slice.
func formatArg(a any) any {
	if f, ok := a.(hclog.Format); ok && len(f) > 0 {
		if format, ok := f[0].(string); ok {
			return fmt.Sprintf(format, f[1:]...)
		}
	}
	return a
}

func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogAdapter) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *hclogAdapter) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *hclogAdapter) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *hclogAdapter) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *hclogAdapter) IsError() bool { return h.enabled(hclog.Error) }

func (h *hclogAdapter) ImpliedArgs() []any { return h.args }

func (h *hclogAdapter) With(args ...any) hclog.Logger {
	c := *h
	c.args = append(append([]any(nil), h.args...), args...)
	return &c
}

func (h *hclogAdapter) Name() string { return h.name }

func (h *hclogAdapter) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

func (h *hclogAdapter) SetLevel(level hclog.Level) { h.level = level }

func (h *hclogAdapter) GetLevel() hclog.Level {
	if h.level != hclog.NoLevel {
		return h.level
	}
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn} {
		if h.l.Enabled(context.Background(), toSlogLevel(l)) {
			return l
		}
	}
	return hclog.Error
}

func (h *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return &stdWriter{h: h, level: level}
}

// stdWriter turns lines written by a standard *log.Logger into log records,
// stripping the "[LEVEL]" prefix that standard-library users tend to write.
type stdWriter struct {
	h     *hclogAdapter
	level hclog.Level
}

func (w *stdWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		s := strings.TrimSpace(string(line))
		level := w.level
		for prefix, l := range map[string]hclog.Level{
			"[TRACE]": hclog.Trace, "[DEBUG]": hclog.Debug, "[INFO]": hclog.Info,
			"[WARN]": hclog.Warn, "[ERR]": hclog.Error, "[ERROR]": hclog.Error,
		} {
			if strings.HasPrefix(s, prefix) {
				s, level = strings.TrimSpace(s[len(prefix):]), l
				break
			}
		}
		w.h.Log(level, s)
	}
	return len(p), nil
}
