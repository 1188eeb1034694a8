// Package metrics exposes Rookery's Prometheus metrics. It is the only
// package that imports the Prometheus client: the packages it watches
// (cluster, mupdatecompat, gateway) offer plain accessors and hooks in
// their Configs, and the collectors here read them at scrape time or count
// what the hooks report.
//
// Each process builds one Registry (NewRegistry) and registers what it
// runs: NewNodeCollector for a rookeryd node, MUPDATE and cluster hooks,
// gRPC interceptors, the hashicorp/raft go-metrics bridge (RaftBridge), or
// NewGatewayCollector for rookery-gateway. Names follow the Prometheus
// conventions: a rookery_ prefix, base units (seconds, bytes) in the name,
// _total on counters; README.md "Operating Rookery" lists them.
package metrics
