package metrics

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// GRPCMetrics are server interceptors exporting the usual
// grpc_server_started_total, grpc_server_handled_total and
// grpc_server_handling_seconds series (the shape of
// go-grpc-middleware's prometheus provider, so existing dashboards work).
type GRPCMetrics struct {
	started  *prometheus.CounterVec
	handled  *prometheus.CounterVec
	handling *prometheus.HistogramVec
	auth     *AuthFailures
}

// NewGRPCMetrics registers the gRPC metrics on reg.
func NewGRPCMetrics(reg prometheus.Registerer, auth *AuthFailures) *GRPCMetrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	g := &GRPCMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total",
			Help: "RPCs started on the server.",
		}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "RPCs completed on the server, by status code.",
		}, append(labels, "grpc_code")),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Time from an RPC's start to its completion on the server (streams: their whole life).",
			Buckets: durationBuckets,
		}, labels),
		auth: auth,
	}
	reg.MustRegister(g.started, g.handled, g.handling)
	return g
}

// ServerOptions returns the interceptors as the outermost ones
// (grpc.UnaryInterceptor and grpc.StreamInterceptor run before any
// chained interceptor), so calls refused by authentication are counted.
func (g *GRPCMetrics) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.UnaryInterceptor(g.unary), grpc.StreamInterceptor(g.stream)}
}

func (g *GRPCMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	done := g.begin("unary", info.FullMethod)
	resp, err := handler(ctx, req)
	done(err)
	return resp, err
}

func (g *GRPCMetrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	typ := "bidi_stream"
	switch {
	case info.IsClientStream && !info.IsServerStream:
		typ = "client_stream"
	case !info.IsClientStream && info.IsServerStream:
		typ = "server_stream"
	}
	done := g.begin(typ, info.FullMethod)
	err := handler(srv, ss)
	done(err)
	return err
}

func (g *GRPCMetrics) begin(typ, fullMethod string) func(error) {
	service, method := splitMethod(fullMethod)
	g.started.WithLabelValues(typ, service, method).Inc()
	start := time.Now()
	return func(err error) {
		code := status.Code(err)
		g.handled.WithLabelValues(typ, service, method, code.String()).Inc()
		g.handling.WithLabelValues(typ, service, method).Observe(time.Since(start).Seconds())
		if code == codes.Unauthenticated {
			g.auth.Inc("grpc")
		}
	}
}

// splitMethod splits "/pkg.Service/Method".
func splitMethod(full string) (string, string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndex(full, "/"); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", "unknown"
}
