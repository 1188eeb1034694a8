package api

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthServer implements grpc.health.v1 from the node's raft view: a node
// is SERVING while it knows a leader, because only then can it forward
// writes and serve linearizable reads, and has no active alarm (a failing
// disk, a diverged or damaged directory). Load balancers and rookeryctl
// use it.
type healthServer struct {
	healthpb.UnimplementedHealthServer
	s *Server
}

// healthServices are the names Check accepts ("" is the whole server).
func healthServices() []string { return []string{"", "rookery.v1.Directory", "rookery.v1.Cluster"} }

func (h *healthServer) current() healthpb.HealthCheckResponse_ServingStatus {
	if h.s.node.Leader().ID != "" && len(h.s.node.Alarms()) == 0 {
		return healthpb.HealthCheckResponse_SERVING
	}
	return healthpb.HealthCheckResponse_NOT_SERVING
}

func knownService(name string) bool {
	for _, s := range healthServices() {
		if s == name {
			return true
		}
	}
	return false
}

// Check answers the current status.
func (h *healthServer) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if !knownService(req.GetService()) {
		return nil, status.Errorf(codes.NotFound, "unknown service %q", req.GetService())
	}
	return &healthpb.HealthCheckResponse{Status: h.current()}, nil
}

// List answers the status of every service.
func (h *healthServer) List(context.Context, *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	st := h.current()
	resp := &healthpb.HealthListResponse{Statuses: map[string]*healthpb.HealthCheckResponse{}}
	for _, s := range healthServices() {
		resp.Statuses[s] = &healthpb.HealthCheckResponse{Status: st}
	}
	return resp, nil
}

// Watch sends the status, then every change (polled every 250 ms).
func (h *healthServer) Watch(req *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	if !knownService(req.GetService()) {
		return stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVICE_UNKNOWN})
	}
	last := healthpb.HealthCheckResponse_UNKNOWN
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if st := h.current(); st != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		select {
		case <-t.C:
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
	}
}
