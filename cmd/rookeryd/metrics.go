package main

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rookery/rookery/cluster"
	"github.com/rookery/rookery/internal/metrics"
	"github.com/rookery/rookery/mupdatecompat"
)

// newRegistry is the process's metrics registry, with hashicorp/raft's
// go-metrics bridged into it. go-metrics reports to one process-wide sink;
// this is the only place that sets it (serve runs once per process, except
// in tests, which do not install it).
func newRegistry() (*prometheus.Registry, error) {
	reg := metrics.NewRegistry()
	bridge, err := metrics.NewRaftBridge(reg)
	if err != nil {
		return nil, err
	}
	if err := bridge.InstallGlobal(); err != nil {
		return nil, err
	}
	return reg, nil
}

// nodeMetrics are the metrics of one rookeryd node. The hooks must exist
// before the node and the MUPDATE server they observe; watch registers
// the collectors that read those once they exist.
type nodeMetrics struct {
	reg     *prometheus.Registry
	cluster *metrics.ClusterHooks
	grpc    *metrics.GRPCMetrics
	mupdate *metrics.MupdateMetrics
	ms      atomic.Pointer[mupdatecompat.Server]
}

func newNodeMetrics(reg *prometheus.Registry) *nodeMetrics {
	m := &nodeMetrics{reg: reg}
	auth := metrics.NewAuthFailures(reg, "mupdate", "grpc")
	m.cluster = metrics.NewClusterHooks(reg)
	m.grpc = metrics.NewGRPCMetrics(reg, auth)
	m.mupdate = metrics.NewMupdateMetrics(reg, auth, func() metrics.Mupdate {
		if s := m.ms.Load(); s != nil {
			return s
		}
		return nil
	})
	return m
}

func (m *nodeMetrics) watch(node *cluster.Node, ms *mupdatecompat.Server) {
	m.ms.Store(ms)
	m.reg.MustRegister(metrics.NewNodeCollector(node))
}
