package jepsen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/rookery/rookery/internal/imapwire"
	"github.com/rookery/rookery/internal/mupdateclient"
	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// worker is one client: it issues operations back to back against one
// node over one protocol and records each in the history. After an
// operation with an unknown outcome it continues as a new process, as
// Jepsen does, because the old one may still be "in" that operation.
type worker struct {
	h        *History
	proto    string
	node     *Node
	rng      *rand.Rand
	wl       Workload
	timeout  time.Duration
	think    time.Duration
	process  int
	unsafe   bool // gRPC reads served stale, checked as linearizable
	do       func(ctx context.Context, in modelInput) Result
	ready    func(ctx context.Context) bool
	closeFns []func()
}

func (w *worker) run(ctx context.Context) {
	defer func() {
		for _, f := range w.closeFns {
			f()
		}
	}()
	for ctx.Err() == nil {
		if !w.ready(ctx) {
			sleepCtx(ctx, 50*time.Millisecond)
			continue
		}
		in := w.wl.next(w.rng)
		op := w.h.Invoke(&Op{Process: w.process, Proto: w.proto, Node: w.node.ID, Kind: in.Kind, Name: in.Name, Loc: in.Loc, ACL: in.ACL})
		octx, cancel := context.WithTimeout(context.Background(), w.timeout)
		res := w.do(octx, in)
		cancel()
		w.h.Complete(op, res)
		if res.Outcome == Unknown {
			w.process = w.h.NewProcess()
		}
		if w.think > 0 {
			sleepCtx(ctx, time.Duration(w.rng.Int64N(int64(2*w.think))))
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// dialNode opens a gRPC connection to a node's real port with the run's
// credentials.
func dialNode(n *Node, token string) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+n.GRPCAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(tokenCreds(token)))
}

// newGRPCWorker makes a worker speaking gRPC to one node, one attempt per
// operation: no client-side retry or failover, so the history says exactly
// what one call did.
func newGRPCWorker(h *History, n *Node, token string, w worker) (*worker, error) {
	cc, err := dialNode(n, token)
	if err != nil {
		return nil, err
	}
	dir := rookeryv1.NewDirectoryClient(cc)
	w.h, w.proto, w.node, w.process = h, "grpc", n, h.NewProcess()
	w.closeFns = append(w.closeFns, func() { cc.Close() })
	// An operation is only invoked on a connection that is up: a call on a
	// connection known to be down would fail before being sent, and
	// recording it would add nothing but noise.
	w.ready = func(ctx context.Context) bool {
		if s := cc.GetState(); s != connectivity.Ready {
			cc.Connect()
			wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			cc.WaitForStateChange(wctx, s)
			cancel()
			return cc.GetState() == connectivity.Ready
		}
		return true
	}
	unsafe := w.unsafe
	w.do = func(ctx context.Context, in modelInput) Result {
		if in.Kind == KindGet {
			c := rookeryv1.Consistency_CONSISTENCY_LINEARIZABLE
			if unsafe {
				c = rookeryv1.Consistency_CONSISTENCY_STALE
			}
			resp, err := dir.Get(ctx, &rookeryv1.GetRequest{Name: in.Name, Consistency: c})
			r := grpcReadResult(resp, err)
			r.Stale = unsafe
			return r
		}
		var resp *rookeryv1.WriteResponse
		var err error
		switch in.Kind {
		case KindReserve:
			resp, err = dir.Reserve(ctx, &rookeryv1.ReserveRequest{Name: in.Name, Location: in.Loc})
		case KindActivate:
			resp, err = dir.Activate(ctx, &rookeryv1.ActivateRequest{Name: in.Name, Location: in.Loc, Acl: in.ACL})
		case KindDeactivate:
			resp, err = dir.Deactivate(ctx, &rookeryv1.DeactivateRequest{Name: in.Name, Location: in.Loc})
		case KindDelete:
			resp, err = dir.Delete(ctx, &rookeryv1.DeleteRequest{Name: in.Name})
		}
		return grpcWriteResult(resp, err)
	}
	ww := w
	return &ww, nil
}

// grpcReadResult: a read that fails did nothing; NOT_FOUND is an answer.
func grpcReadResult(resp *rookeryv1.GetResponse, err error) Result {
	if err == nil {
		m := resp.GetMailbox()
		return Result{Outcome: OK, Found: true, State: stateFromProto(m.GetState()), Loc: m.GetLocation(), ACL: m.GetAcl(), Revision: resp.GetRevision()}
	}
	st, _ := status.FromError(err)
	if st.Code() == codes.NotFound {
		return Result{Outcome: OK, Revision: revisionInMessage(st.Message())}
	}
	return Result{Outcome: Fail, Err: err, ServerError: grpcServerError(st.Code())}
}

// grpcServerError: codes a node must never answer the run's admin with.
func grpcServerError(c codes.Code) bool {
	switch c {
	case codes.Internal, codes.Unknown, codes.InvalidArgument, codes.PermissionDenied,
		codes.Unauthenticated, codes.Unimplemented, codes.DataLoss:
		return true
	}
	return false
}

// revisionInMessage reads the revision the NOT_FOUND message of Get
// names ("... (at revision N)"); 0 when absent.
func revisionInMessage(msg string) uint64 {
	i := strings.LastIndex(msg, "(at revision ")
	if i < 0 {
		return 0
	}
	var rev uint64
	if _, err := fmt.Sscanf(msg[i:], "(at revision %d)", &rev); err != nil {
		return 0
	}
	return rev
}

// grpcWriteResult classifies a write's answer. The directory's refusals
// are definite; UNAVAILABLE and every transport failure leave the write
// possibly applied.
func grpcWriteResult(resp *rookeryv1.WriteResponse, err error) Result {
	if err == nil {
		return Result{Outcome: OK, Revision: resp.GetRevision()}
	}
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.AlreadyExists:
		return Result{Outcome: Fail, Code: CodeExists, Err: err}
	case codes.NotFound:
		return Result{Outcome: Fail, Code: CodeNotFound, Err: err}
	case codes.FailedPrecondition:
		if strings.Contains(st.Message(), "not currently active") {
			return Result{Outcome: Fail, Code: CodeNotActive, Err: err}
		}
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated:
		return Result{Outcome: Fail, Err: err, ServerError: true}
	}
	return Result{Outcome: Unknown, Err: err, ServerError: grpcServerError(st.Code())}
}

// newMupdateWorker makes a worker speaking MUPDATE to one node, like a
// Cyrus backend: it often opens a new connection and logs in for an
// operation, and always after an error.
func newMupdateWorker(h *History, n *Node, user, password string, w worker) *worker {
	w.h, w.proto, w.node, w.process = h, "mupdate", n, h.NewProcess()
	cfg := mupdateclient.DefaultConfig()
	cfg.User, cfg.Password = user, password
	var cl *mupdateclient.Client
	drop := func() {
		if cl != nil {
			cl.Close()
			cl = nil
		}
	}
	w.closeFns = append(w.closeFns, drop)
	w.ready = func(ctx context.Context) bool {
		if cl != nil && w.rng.IntN(5) == 0 {
			_ = cl.SendLogout(ctx)
			drop()
		}
		if cl != nil {
			return true
		}
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		c, err := mupdateclient.Dial(dctx, n.MupdateAddr, cfg)
		if err != nil {
			return false
		}
		cl = c
		return true
	}
	w.do = func(ctx context.Context, in modelInput) Result {
		var err error
		switch in.Kind {
		case KindGet:
			e, found, err := cl.Find(ctx, in.Name)
			if err != nil {
				if !mupdateclient.IsStatus(err, "NO") {
					drop()
				}
				return Result{Outcome: Fail, Err: err, ServerError: mupdateServerError(err)}
			}
			r := Result{Outcome: OK, Found: found}
			if found {
				r.State, r.Loc, r.ACL = StateActive, e.Location, e.ACL
				if e.Reserved {
					r.State = StateReserved
				}
			}
			return r
		case KindReserve:
			err = cl.Reserve(ctx, in.Name, in.Loc)
		case KindActivate:
			err = cl.Activate(ctx, in.Name, in.Loc, in.ACL)
		case KindDeactivate:
			err = cl.Deactivate(ctx, in.Name, in.Loc)
		case KindDelete:
			err = cl.Delete(ctx, in.Name)
		}
		r := mupdateWriteResult(err)
		if err != nil && !mupdateclient.IsStatus(err, "NO") {
			drop() // the connection's state is unknown
		}
		return r
	}
	ww := w
	return &ww
}

// mupdateWriteResult classifies a MUPDATE write's answer by the texts real
// Cyrus sends (docs/mupdate.md §5); any other NO (no quorum, directory error)
// and any transport failure leave the write possibly applied.
func mupdateWriteResult(err error) Result {
	if err == nil {
		return Result{Outcome: OK}
	}
	var se *mupdateclient.StatusError
	if errors.As(err, &se) && se.Status == "NO" {
		switch se.Text {
		case "mailbox already exists":
			return Result{Outcome: Fail, Code: CodeExists, Err: err}
		case "mailbox doesn't exist":
			return Result{Outcome: Fail, Code: CodeNotFound, Err: err}
		case "mailbox not currently active":
			return Result{Outcome: Fail, Code: CodeNotActive, Err: err}
		case "permission denied", "invalid command":
			return Result{Outcome: Fail, Err: err, ServerError: true}
		}
	}
	if errors.As(err, &se) && se.Status == "BAD" {
		// Refused before execution (a syntax or state error).
		return Result{Outcome: Fail, Err: err, ServerError: true}
	}
	return Result{Outcome: Unknown, Err: err, ServerError: mupdateServerError(err)}
}

// mupdateServerError: answers a node must never give to well-formed
// commands from the run's admin identity. A NO saying the directory is
// temporarily unavailable is expected under faults.
func mupdateServerError(err error) bool {
	var se *mupdateclient.StatusError
	if !errors.As(err, &se) {
		return errors.Is(err, imapwire.ErrProtocol)
	}
	return se.Status == "BAD" || se.Text == "directory error" || se.Text == "permission denied" || se.Text == "invalid command"
}
