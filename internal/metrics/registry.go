package metrics

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

// durationBuckets cover 100 µs (an fsync on a fast SSD, a FIND) to 10 s
// (WriteTimeout): what a Raft write or a MUPDATE command may take.
var durationBuckets = prometheus.ExponentialBucketsRange(0.0001, 10, 16)
