package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Mupdate is what the MUPDATE metrics read; *mupdatecompat.Server
// implements it.
type Mupdate interface {
	Connections() int
	Streams() int
	FullDumps() uint64
}

// MupdateMetrics counts MUPDATE commands (through
// mupdatecompat.Config.ObserveCommand) and reads the server's gauges.
type MupdateMetrics struct {
	commands *prometheus.CounterVec
	duration *prometheus.HistogramVec
	auth     *AuthFailures
}

// NewMupdateMetrics registers the MUPDATE metrics on reg. srv is read at
// scrape time; it may be set later with SetServer's closure style, so the
// hook can go into the server's Config before the server exists.
func NewMupdateMetrics(reg prometheus.Registerer, auth *AuthFailures, srv func() Mupdate) *MupdateMetrics {
	m := &MupdateMetrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rookery_mupdate_commands_total",
			Help: "MUPDATE commands answered, by command and result (ok, no, bad, bye).",
		}, []string{"command", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rookery_mupdate_command_duration_seconds",
			Help:    "Time from reading a MUPDATE command to its answer (for UPDATE: the dump up to OK \"streaming starts\").",
			Buckets: durationBuckets,
		}, []string{"command"}),
		auth: auth,
	}
	gauge := func(name, help string, f func(Mupdate) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			if s := srv(); s != nil {
				return f(s)
			}
			return 0
		})
	}
	reg.MustRegister(m.commands, m.duration,
		gauge("rookery_mupdate_connections", "Open MUPDATE connections.",
			func(s Mupdate) float64 { return float64(s.Connections()) }),
		gauge("rookery_mupdate_streams", "Open MUPDATE UPDATE streams (Cyrus frontend slaves).",
			func(s Mupdate) float64 { return float64(s.Streams()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "rookery_mupdate_full_dumps_total",
			Help: "UPDATE commands without a host list answered with a dump of the whole directory.",
		}, func() float64 {
			if s := srv(); s != nil {
				return float64(s.FullDumps())
			}
			return 0
		}),
	)
	return m
}

// ObserveCommand is the mupdatecompat.Config.ObserveCommand hook. A
// refused AUTHENTICATE also counts as an authentication failure.
func (m *MupdateMetrics) ObserveCommand(command, result string, d time.Duration) {
	m.commands.WithLabelValues(command, result).Inc()
	m.duration.WithLabelValues(command).Observe(d.Seconds())
	if command == "AUTHENTICATE" && result == "no" {
		m.auth.Inc("mupdate")
	}
}

// AuthFailures is rookery_auth_failures_total, shared by the protocols of
// one process.
type AuthFailures struct{ c *prometheus.CounterVec }

// NewAuthFailures registers rookery_auth_failures_total on reg, with zero
// series for protocols so alerts on rate() work from the first failure.
func NewAuthFailures(reg prometheus.Registerer, protocols ...string) *AuthFailures {
	a := &AuthFailures{c: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rookery_auth_failures_total",
		Help: "Failed logins (bad password, unknown user, no role), by protocol.",
	}, []string{"protocol"})}
	for _, p := range protocols {
		a.c.WithLabelValues(p)
	}
	reg.MustRegister(a.c)
	return a
}

// Inc counts one failure for protocol.
func (a *AuthFailures) Inc(protocol string) { a.c.WithLabelValues(protocol).Inc() }
