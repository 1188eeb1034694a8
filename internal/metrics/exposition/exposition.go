// Package exposition builds the Prometheus registry every Rookery binary
// starts from and serves it over HTTP. It is apart from package metrics,
// whose collectors watch the cluster package, so that rookery-gateway can
// export metrics without linking the server (see internal/deps).
package exposition

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry with the Go runtime and process
// collectors, which every Rookery binary exports.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Handler serves reg in the Prometheus text (or OpenMetrics, when asked)
// exposition format. A collector failing mid-scrape yields a partial
// answer rather than none: an operator watching a sick node still sees
// what can be read.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	})
}
