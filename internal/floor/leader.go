package floor

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"

	"github.com/rookery/rookery/fsm"
)

// Config configures a Leader. Start from DefaultConfig.
type Config struct {
	// Dir holds the leader's log file.
	Dir string
	// Followers are the two followers' addresses.
	Followers []string
	// Token is the secret the followers expect (TokenSize bytes).
	Token []byte
	// InFlight is how many batches replicate at once, as Rookery's
	// raft.proposals_in_flight.
	InFlight int
	// SyncFirst makes the leader sync a batch before sending it, the order
	// hashicorp/raft keeps. Off, the leader's sync overlaps the followers'.
	SyncFirst bool
	// MaxBatch caps the commands in one batch.
	MaxBatch int
}

// DefaultConfig is the leanest setting: two batches in flight, the
// leader's sync overlapping the followers'.
func DefaultConfig() Config { return Config{InFlight: 2, MaxBatch: 4096} }

// quorum is two of three: the leader and one follower, or both followers.
const quorum = 2

// Leader groups concurrent writes into batches, replicates each to both
// followers while it writes it itself, and applies a batch once a quorum
// has synced it, in order. It implements directory.Replica.
type Leader struct {
	cfg   Config
	store *fsm.Store
	disk  *disk
	log   *slog.Logger

	props  chan *proposal
	slots  chan struct{}
	toDisk chan diskJob
	peers  []*peer
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	pending []*batch  // sent, not yet committed, in order
	synced  [3]uint64 // highest sequence on disk: leader, follower 1, 2
	failed  error
}

type proposal struct {
	ctx  context.Context
	cmds []fsm.Command
	done chan outcome
}

type outcome struct {
	results []fsm.Result
	seq     uint64 // the batch that carried the write
	err     error
}

type batch struct {
	seq   uint64
	props []*proposal
	cmds  []fsm.Command
}

type diskJob struct {
	seq     uint64
	payload []byte
}

type peer struct {
	log  net.Conn
	ping *pinger
	fwd  net.Conn // the follower's forwarded requests (forward.go)
	buf  []byte
}

// NewLeader connects to the followers and starts replicating.
func NewLeader(cfg Config, log *slog.Logger) (*Leader, error) {
	if len(cfg.Followers) != 2 {
		return nil, fmt.Errorf("floor: need 2 followers, got %d", len(cfg.Followers))
	}
	if cfg.InFlight < 1 || cfg.MaxBatch < 1 {
		return nil, errors.New("floor: InFlight and MaxBatch must be positive")
	}
	d, err := openDisk(filepath.Join(cfg.Dir, "floor.log"))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Leader{
		cfg: cfg, store: fsm.New(fsm.DefaultConfig()), disk: d, log: log,
		props: make(chan *proposal, 4096), slots: make(chan struct{}, cfg.InFlight),
		toDisk: make(chan diskJob, cfg.InFlight), ctx: ctx, cancel: cancel,
	}
	for _, addr := range cfg.Followers {
		p, err := dialPeer(addr, cfg.Token)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("floor: follower %s: %w", addr, err)
		}
		l.peers = append(l.peers, p)
	}
	for i, p := range l.peers {
		l.goRun(func() { l.readAcks(i+1, p.log) })
		l.goRun(func() { p.ping.run(ctx) })
		l.goRun(func() { l.serveForward(i+1, p.fwd) })
	}
	l.goRun(l.writeLocal)
	l.goRun(l.propose)
	return l, nil
}

func dialPeer(addr string, token []byte) (*peer, error) {
	lc, err := dialLink(addr, token, kindLog)
	if err != nil {
		return nil, err
	}
	pc, err := dialLink(addr, token, kindPing)
	if err != nil {
		lc.Close()
		return nil, err
	}
	fc, err := dialLink(addr, token, kindForward)
	if err != nil {
		lc.Close()
		pc.Close()
		return nil, err
	}
	return &peer{log: lc, ping: newPinger(pc), fwd: fc}, nil
}

func (l *Leader) goRun(f func()) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		f()
	}()
}

// Store is the leader's applied state.
func (l *Leader) Store() *fsm.Store { return l.store }

// Close stops replication; writes in flight fail.
func (l *Leader) Close() error {
	l.cancel()
	for _, p := range l.peers {
		p.log.Close()
		p.ping.c.Close()
		p.fwd.Close()
	}
	l.wg.Wait()
	l.fail(errors.New("floor: closed"))
	return l.disk.close()
}

// Apply replicates cmds as part of a batch and returns their results once
// a quorum has synced it and the leader has applied it.
func (l *Leader) Apply(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	o := l.apply(ctx, cmds)
	return o.results, o.err
}

// apply is Apply telling also the batch's sequence, which a follower
// forwarding the write waits for (forward.go).
func (l *Leader) apply(ctx context.Context, cmds []fsm.Command) outcome {
	p := &proposal{ctx: ctx, cmds: cmds, done: make(chan outcome, 1)}
	select {
	case l.props <- p:
	case <-ctx.Done():
		return outcome{err: ctx.Err()}
	case <-l.ctx.Done():
		return outcome{err: errors.New("floor: closed")}
	}
	select {
	case o := <-p.done:
		return o
	case <-ctx.Done():
		return outcome{err: ctx.Err()}
	case <-l.ctx.Done():
		return outcome{err: errors.New("floor: closed")}
	}
}

// ApplyCommitted is Apply: the leader applies on commit.
func (l *Leader) ApplyCommitted(ctx context.Context, cmds []fsm.Command) ([]fsm.Result, error) {
	return l.Apply(ctx, cmds)
}

// propose forms batches: it waits for a free slot, takes every write
// queued meanwhile, and hands the batch to the followers and the disk.
func (l *Leader) propose() {
	for {
		var first *proposal
		select {
		case first = <-l.props:
		case <-l.ctx.Done():
			return
		}
		select {
		case l.slots <- struct{}{}:
		case <-l.ctx.Done():
			first.done <- outcome{err: errors.New("floor: closed")}
			return
		}
		b := l.gather(first)
		payload := fsm.EncodeCommands(b.cmds)
		l.mu.Lock()
		l.pending = append(l.pending, b)
		l.mu.Unlock()
		if l.cfg.SyncFirst {
			l.writeOwn(b.seq, payload)
		}
		for _, p := range l.peers {
			p.buf = putFrame(p.buf, b.seq, payload)
			if _, err := p.log.Write(p.buf); err != nil {
				l.fail(fmt.Errorf("floor: send: %w", err))
				return
			}
		}
		if !l.cfg.SyncFirst {
			l.toDisk <- diskJob{seq: b.seq, payload: payload}
		}
	}
}

func (l *Leader) gather(first *proposal) *batch {
	b := &batch{props: []*proposal{first}, cmds: append([]fsm.Command{}, first.cmds...)}
	for more := true; more && len(b.cmds) < l.cfg.MaxBatch; {
		select {
		case p := <-l.props:
			b.props = append(b.props, p)
			b.cmds = append(b.cmds, p.cmds...)
		default:
			more = false
		}
	}
	l.mu.Lock()
	b.seq = l.nextSeq()
	l.mu.Unlock()
	return b
}

func (l *Leader) nextSeq() uint64 {
	if n := len(l.pending); n > 0 {
		return l.pending[n-1].seq + 1
	}
	return l.store.AppliedIndex() + 1
}

// writeLocal writes the leader's own copy of each batch, those queued
// together as one record.
func (l *Leader) writeLocal() {
	for {
		var j diskJob
		select {
		case j = <-l.toDisk:
		case <-l.ctx.Done():
			return
		}
		payloads := [][]byte{j.payload}
		for more := true; more; {
			select {
			case n := <-l.toDisk:
				j.seq = n.seq
				payloads = append(payloads, n.payload)
			default:
				more = false
			}
		}
		l.writeOwn(j.seq, payloads...)
	}
}

func (l *Leader) writeOwn(seq uint64, payloads ...[]byte) {
	if err := l.disk.append(seq, payloads...); err != nil {
		l.fail(err)
		return
	}
	l.acked(0, seq)
}

// readAcks takes follower i's acknowledgements.
func (l *Leader) readAcks(i int, c net.Conn) {
	r := bufio.NewReader(c)
	var b [8]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			if l.ctx.Err() == nil {
				l.log.Warn("floor: follower link lost", "follower", i, "err", err)
			}
			return
		}
		l.acked(i, binary.BigEndian.Uint64(b[:]))
	}
}

// acked records that node holds every batch up to seq and applies, in
// order, each batch a quorum now holds.
func (l *Leader) acked(node int, seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.synced[node] = max(l.synced[node], seq)
	for len(l.pending) > 0 {
		b := l.pending[0]
		votes := 0
		for _, s := range l.synced {
			if s >= b.seq {
				votes++
			}
		}
		if votes < quorum {
			return
		}
		l.pending = l.pending[1:]
		l.answer(b, l.store.Apply(b.seq, b.cmds), nil)
		<-l.slots
	}
}

func (l *Leader) answer(b *batch, results []fsm.Result, err error) {
	at := 0
	for _, p := range b.props {
		o := outcome{seq: b.seq, err: err}
		if err == nil {
			o.results = results[at : at+len(p.cmds)]
			at += len(p.cmds)
		}
		p.done <- o
	}
}

// fail ends replication: every pending write fails with err.
func (l *Leader) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed == nil {
		l.failed = err
		l.log.Error("floor: replication stopped", "err", err)
	}
	for _, b := range l.pending {
		l.answer(b, nil, l.failed)
	}
	l.pending = nil
	l.cancel()
}
