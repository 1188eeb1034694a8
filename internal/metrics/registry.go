package metrics

import "github.com/prometheus/client_golang/prometheus"

// durationBuckets cover 100 µs (an fsync on a fast SSD, a FIND) to 10 s
// (WriteTimeout): what a Raft write or a MUPDATE command may take.
var durationBuckets = prometheus.ExponentialBucketsRange(0.0001, 10, 16)
