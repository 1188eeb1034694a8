package cluster

import (
	"errors"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// errInjected is the error of an injected fault (an RPC dropped, a write failed).
var errInjected = errors.New("injected fault")

// fault is what a faultTransport does with one outgoing RPC; the zero
// fault sends it.
type fault struct {
	fail bool            // fail it without sending (a dropped RPC)
	hold <-chan struct{} // send it once this closes (a delayed RPC)
}

// faultTransport wraps a node's raft transport (Config.Transport) and
// asks its rule, per outgoing RPC, whether to drop or delay it: the rule
// sees the target and the request, so faults are per peer and per RPC
// type, and a delay lasts exactly until the test closes its channel.
// It also keeps the heartbeat handler raft installs, so a test can
// deliver a heartbeat itself, as a connection goroutine would.
type faultTransport struct {
	Transport

	mu        sync.Mutex
	rule      func(to raft.ServerID, req any) fault
	heartbeat func(raft.RPC)
	closed    chan struct{}
	closeOnce sync.Once
}

func newFaultTransport(inner Transport) *faultTransport {
	return &faultTransport{Transport: inner, closed: make(chan struct{})}
}

// setRule replaces the rule; nil sends everything.
func (t *faultTransport) setRule(rule func(to raft.ServerID, req any) fault) {
	t.mu.Lock()
	t.rule = rule
	t.mu.Unlock()
}

func (t *faultTransport) inject(to raft.ServerID, req any) error {
	t.mu.Lock()
	rule := t.rule
	t.mu.Unlock()
	if rule == nil {
		return nil
	}
	f := rule(to, req)
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-t.closed:
			return errInjected
		}
	}
	if f.fail {
		return errInjected
	}
	return nil
}

func (t *faultTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if err := t.inject(id, args); err != nil {
		return err
	}
	return t.Transport.AppendEntries(id, target, args, resp)
}

func (t *faultTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if err := t.inject(id, args); err != nil {
		return err
	}
	return t.Transport.RequestVote(id, target, args, resp)
}

func (t *faultTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if err := t.inject(id, args); err != nil {
		return err
	}
	return t.Transport.RequestPreVote(id, target, args, resp)
}

func (t *faultTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	if err := t.inject(id, args); err != nil {
		return err
	}
	return t.Transport.TimeoutNow(id, target, args, resp)
}

func (t *faultTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if err := t.inject(id, args); err != nil {
		return err
	}
	return t.Transport.InstallSnapshot(id, target, args, resp, data)
}

// SetHeartbeatHandler keeps cb (raft's handler behind the node's fence)
// for deliverHeartbeat.
func (t *faultTransport) SetHeartbeatHandler(cb func(raft.RPC)) {
	t.mu.Lock()
	t.heartbeat = cb
	t.mu.Unlock()
	t.Transport.SetHeartbeatHandler(cb)
}

// deliverHeartbeat hands req to the installed heartbeat handler, as the
// transport does on a connection goroutine, and returns raft's answer.
func (t *faultTransport) deliverHeartbeat(req *raft.AppendEntriesRequest) raft.RPCResponse {
	t.mu.Lock()
	cb := t.heartbeat
	t.mu.Unlock()
	respCh := make(chan raft.RPCResponse, 1)
	cb(raft.RPC{Command: req, RespChan: respCh})
	select {
	case r := <-respCh:
		return r
	default:
		return raft.RPCResponse{Error: errors.New("heartbeat not answered")}
	}
}

// Close releases every held RPC (failing it) and closes the transport.
func (t *faultTransport) Close() error {
	t.closeOnce.Do(func() { close(t.closed) })
	return t.Transport.Close()
}
