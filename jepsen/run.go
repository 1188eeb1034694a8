package jepsen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	rookeryv1 "github.com/rookery/rookery/proto/rookery/v1"
)

// Config configures one run.
type Config struct {
	// Name labels the run's folder and summary.
	Name string
	// Binary is the rookeryd to test; Dir the run's folder (created).
	Binary string
	Dir    string
	Nodes  int
	// Nemesis is one of the Nemesis* classes.
	Nemesis string
	// Duration of the workload under faults (healing and checking come
	// after it).
	Duration time.Duration
	// Clients per node; even-numbered ones speak gRPC, odd ones MUPDATE.
	ClientsPerNode int
	// Think is the mean pause between a client's operations.
	Think time.Duration
	// OpTimeout bounds one operation; past it the outcome is unknown.
	OpTimeout time.Duration
	// FaultFor and QuietFor: each fault lasts [FaultFor, 2·FaultFor), then
	// the cluster is left alone for [QuietFor, 2·QuietFor).
	FaultFor, QuietFor time.Duration
	// UnsafeStaleReads makes gRPC clients read with consistency STALE
	// while the history records the reads as linearizable: a deliberately
	// wrong client, to prove the checker catches stale reads.
	UnsafeStaleReads bool
	// ClockDrift, when positive, runs the clock nemesis beside Nemesis:
	// lease clock rates in [1−ClockDrift, 1+ClockDrift] (clock.go). It
	// needs rookeryd built with -tags clocknemesis.
	ClockDrift float64
	Workload   Workload
	Seed       uint64
	Cluster    ClusterConfig
	Check      CheckConfig
	Logger     *slog.Logger
}

// DefaultConfig is a 3-node mixed-nemesis run of 30 s.
func DefaultConfig() Config {
	return Config{
		Nodes:          3,
		Nemesis:        NemesisMixed,
		Duration:       30 * time.Second,
		ClientsPerNode: 2,
		Think:          20 * time.Millisecond,
		OpTimeout:      6 * time.Second,
		FaultFor:       2 * time.Second,
		QuietFor:       time.Second,
		Workload:       DefaultWorkload(),
		Seed:           uint64(time.Now().UnixNano()),
		Cluster: ClusterConfig{
			WriteTimeout:      2 * time.Second,
			SnapshotThreshold: 400,
			TrailingLogs:      200,
			SnapshotInterval:  2 * time.Second,
		},
		Check: DefaultCheckConfig(),
	}
}

// RunResult is a finished run: where its files are and the verdict.
type RunResult struct {
	Dir    string
	Report *Report
	// Problems are harness-level failures (the cluster did not heal, a
	// stream never started) that make the run inconclusive.
	Problems []string
	// Terms are the highest raft term any node reported when the workload
	// started and when it ended (before healing): a run without nemesis
	// whose terms differ had an election nobody caused.
	Terms [2]uint64
}

// Summary is the run's one-line summary.
func (r *RunResult) Summary(cfg Config) string {
	verdict := "VALID"
	if !r.Report.Valid() || len(r.Problems) > 0 {
		verdict = "INVALID"
	}
	nem := describeNemesis(cfg.Nemesis)
	if cfg.ClockDrift > 0 {
		nem += fmt.Sprintf("+clock(drift %.2f)", cfg.ClockDrift)
	}
	if cfg.Cluster.ReadMode != "" {
		nem += " read_mode=" + cfg.Cluster.ReadMode
	}
	return fmt.Sprintf("%s: %s nodes=%d nemesis=%s duration=%s terms=%d→%d %s", cfg.Name, verdict, cfg.Nodes,
		nem, cfg.Duration, r.Terms[0], r.Terms[1], r.Report.Summary())
}

// Run starts a cluster, runs the workload under the nemesis, heals, reads
// the final state, checks everything and writes the run's folder:
// history.jsonl, streams.json, final.json, report.json, summary.txt, the
// node logs, and linearizability.html when porcupine finds a violation.
func Run(ctx context.Context, cfg Config) (*RunResult, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	cc := cfg.Cluster
	cc.Binary, cc.Dir, cc.Nodes, cc.Logger = cfg.Binary, cfg.Dir, cfg.Nodes, cfg.Logger
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	c, err := StartCluster(sctx, cc)
	cancel()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if cfg.ClockDrift > 0 {
		if err := checkClockNemesis(c); err != nil {
			return nil, err
		}
	}
	r := &run{cfg: cfg, c: c, h: NewHistory(), rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
	return r.execute(ctx)
}

type run struct {
	cfg       Config
	c         *Cluster
	h         *History
	rng       *rand.Rand
	watchers  []*watcher
	streamers []*streamer
	problems  []string
}

func (r *run) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.cfg.Logger.Warn("run problem", "problem", msg)
	r.problems = append(r.problems, msg)
}

func (r *run) execute(ctx context.Context) (*RunResult, error) {
	log := r.cfg.Logger
	// Streams first, so they see every change from revision 0 on.
	streamCtx, stopStreams := context.WithCancel(context.Background())
	var streamWG sync.WaitGroup
	defer func() { stopStreams(); streamWG.Wait() }()
	for i := range r.c.Nodes {
		w, err := newWatcher(r.c, i, 3*time.Second, log)
		if err != nil {
			return nil, err
		}
		r.watchers = append(r.watchers, w)
		s := newStreamer(r.c, r.h, i, log)
		r.streamers = append(r.streamers, s)
		streamWG.Add(2)
		go func() { defer streamWG.Done(); w.run(streamCtx) }()
		go func() { defer streamWG.Done(); s.run(streamCtx) }()
	}
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	for _, w := range r.watchers {
		select {
		case <-w.established:
		case <-ectx.Done():
		}
	}
	for _, s := range r.streamers {
		select {
		case <-s.established:
		case <-ectx.Done():
		}
	}
	startErr := ectx.Err()
	cancel()
	if startErr != nil {
		return nil, fmt.Errorf("jepsen: streams did not start: %w", startErr)
	}

	// Workload and nemesis.
	workCtx, stopWork := context.WithTimeout(ctx, r.cfg.Duration)
	var workWG sync.WaitGroup
	for _, n := range r.c.Nodes {
		for k := 0; k < r.cfg.ClientsPerNode; k++ {
			tmpl := worker{
				rng:     rand.New(rand.NewPCG(r.rng.Uint64(), r.rng.Uint64())),
				wl:      r.cfg.Workload,
				timeout: r.cfg.OpTimeout,
				think:   r.cfg.Think,
				unsafe:  r.cfg.UnsafeStaleReads,
			}
			var w *worker
			if k%2 == 0 {
				var err error
				if w, err = newGRPCWorker(r.h, n, r.c.Token(), tmpl); err != nil {
					stopWork()
					return nil, err
				}
			} else {
				w = newMupdateWorker(r.h, n, r.c.User, r.c.Password, tmpl)
			}
			workWG.Add(1)
			go func() { defer workWG.Done(); w.run(workCtx) }()
		}
	}
	nem := &nemesis{
		class: r.cfg.Nemesis, c: r.c, h: r.h, log: log,
		rng:      rand.New(rand.NewPCG(r.rng.Uint64(), r.rng.Uint64())),
		faultFor: r.cfg.FaultFor, quietFor: r.cfg.QuietFor,
	}
	var terms [2]uint64
	terms[0] = r.c.highestTerm(ctx)
	nemDone := make(chan struct{})
	go func() { defer close(nemDone); nem.run(workCtx) }()
	clockDone := make(chan struct{})
	cn := r.clockNemesis()
	go func() {
		defer close(clockDone)
		if cn != nil {
			cn.run(workCtx)
		}
	}()
	<-workCtx.Done()
	stopWork()
	<-nemDone
	<-clockDone
	workWG.Wait()
	terms[1] = r.c.highestTerm(ctx)
	log.Info("workload done", "ops", len(r.h.Ops()))

	// Heal and converge.
	hctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := r.c.HealAll(hctx); err != nil {
		r.problem("heal: %v", err)
	}
	finalRev, err := r.c.WaitConverged(hctx)
	if err != nil {
		r.problem("%v", err)
	}
	r.finalReads(hctx)
	for _, w := range r.watchers {
		if err := w.waitFor(hctx, finalRev); err != nil {
			log.Warn("watcher did not reach the final revision", "err", err)
		}
	}
	for _, s := range r.streamers {
		if err := s.final(hctx, finalRev); err != nil {
			r.problem("%v", err)
		}
	}
	final := r.finalStates(hctx, finalRev)
	stopStreams()
	streamWG.Wait()

	obs := Observations{Ops: r.h.Ops(), Faults: r.h.Faults(), Final: final, FinalRevision: finalRev}
	for _, w := range r.watchers {
		obs.Watches = append(obs.Watches, w.Sessions()...)
	}
	for _, s := range r.streamers {
		obs.Updates = append(obs.Updates, s.Sessions()...)
	}
	rep := Check(obs, r.cfg.Check)
	res := &RunResult{Dir: r.cfg.Dir, Report: rep, Problems: r.problems, Terms: terms}
	if err := r.write(obs, res); err != nil {
		return res, err
	}
	return res, nil
}

// clockNemesis is the run's clock nemesis; nil without ClockDrift.
func (r *run) clockNemesis() *clockNemesis {
	if r.cfg.ClockDrift <= 0 {
		return nil
	}
	return &clockNemesis{c: r.c, h: r.h, log: r.cfg.Logger, drift: r.cfg.ClockDrift, every: r.cfg.QuietFor,
		rng: rand.New(rand.NewPCG(r.rng.Uint64(), r.rng.Uint64()))}
}

// finalReads reads every name on every node, linearizably, over both
// protocols, once the faults are healed: every acknowledged write must
// show.
func (r *run) finalReads(ctx context.Context) {
	proc := r.h.NewProcess()
	for i, n := range r.c.Nodes {
		g, err := newGRPCWorker(r.h, n, r.c.Token(), worker{timeout: 10 * time.Second, process: proc})
		if err != nil {
			r.problem("final reads on %s: %v", n.ID, err)
			continue
		}
		m := newMupdateWorker(r.h, n, r.c.User, r.c.Password, worker{timeout: 10 * time.Second, process: proc,
			rng: rand.New(rand.NewPCG(uint64(i), 1))})
		for _, w := range []*worker{g, m} {
			w.process = proc
			for _, name := range r.cfg.Workload.Names {
				if !waitReady(ctx, w) {
					r.problem("final reads: %s client to %s not ready", w.proto, n.ID)
					break
				}
				op := r.h.Invoke(&Op{Process: proc, Proto: w.proto, Node: n.ID, Kind: KindGet, Name: name, Final: true})
				octx, cancel := context.WithTimeout(ctx, w.timeout)
				res := w.do(octx, modelInput{Kind: KindGet, Name: name})
				cancel()
				r.h.Complete(op, res)
				if res.Outcome != OK {
					r.problem("final read of %s on %s over %s failed: %v", name, n.ID, w.proto, res.Err)
				}
			}
			for _, f := range w.closeFns {
				f()
			}
		}
	}
}

// waitReady waits until the worker's connection is up.
func waitReady(ctx context.Context, w *worker) bool {
	for !w.ready(ctx) {
		if ctx.Err() != nil {
			return false
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	return true
}

// finalStates lists each member's whole directory at the final revision.
func (r *run) finalStates(ctx context.Context, rev uint64) []NodeState {
	var out []NodeState
	for i, n := range r.c.Nodes {
		st := NodeState{Node: n.ID}
		dir := r.c.DirectoryClient(i)
		if _, err := dir.WaitRevision(ctx, &rookeryv1.WaitRevisionRequest{Revision: rev}); err != nil {
			st.Err = fmt.Sprintf("wait for revision %d: %v", rev, err)
			out = append(out, st)
			continue
		}
		resp, err := dir.List(ctx, &rookeryv1.ListRequest{PageSize: 10000, Consistency: rookeryv1.Consistency_CONSISTENCY_STALE})
		if err != nil {
			st.Err = fmt.Sprintf("list: %v", err)
			out = append(out, st)
			continue
		}
		st.Revision = resp.GetRevision()
		for _, m := range resp.GetMailboxes() {
			st.Entries = append(st.Entries, Mailbox{Name: m.GetName(), State: stateFromProto(m.GetState()), Loc: m.GetLocation(), ACL: m.GetAcl()})
		}
		out = append(out, st)
	}
	return out
}

// write stores the run's folder.
func (r *run) write(obs Observations, res *RunResult) error {
	dir := r.cfg.Dir
	var errs []error
	f, err := os.Create(filepath.Join(dir, "history.jsonl"))
	if err == nil {
		errs = append(errs, WriteJSONL(f, obs.Ops, obs.Faults), f.Close())
	} else {
		errs = append(errs, err)
	}
	errs = append(errs,
		writeJSON(filepath.Join(dir, "streams.json"), struct {
			Watches []WatchSession  `json:"watches"`
			Updates []UpdateSession `json:"updates"`
		}{obs.Watches, obs.Updates}),
		writeJSON(filepath.Join(dir, "final.json"), struct {
			Revision uint64      `json:"revision"`
			Nodes    []NodeState `json:"nodes"`
		}{obs.FinalRevision, obs.Final}),
		writeJSON(filepath.Join(dir, "report.json"), struct {
			Summary   string         `json:"summary"`
			Valid     bool           `json:"valid"`
			Anomalies []Anomaly      `json:"anomalies"`
			Counts    map[string]int `json:"counts"`
			Problems  []string       `json:"problems"`
			Seed      uint64         `json:"seed"`
		}{res.Summary(r.cfg), res.Report.Valid() && len(res.Problems) == 0, res.Report.Anomalies, res.Report.Counts, res.Problems, r.cfg.Seed}),
		os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(res.Summary(r.cfg)+"\n"), 0o644),
	)
	if res.Report.Linearizable == porcupine.Illegal {
		errs = append(errs, r.visualize(obs, res.Report))
	}
	return errors.Join(errs...)
}

// visualize writes porcupine's HTML timeline with the faults drawn in.
func (r *run) visualize(obs Observations, rep *Report) error {
	info := rep.info
	var ann []porcupine.Annotation
	for _, f := range obs.Faults {
		end := f.End
		if end < 0 {
			end = f.Start
		}
		ann = append(ann, porcupine.Annotation{Tag: "nemesis", Start: f.Start, End: end, Description: f.Nemesis, Details: f.Desc, BackgroundColor: "#ffd0d0"})
	}
	info.AddAnnotations(ann)
	return porcupine.VisualizePath(DirectoryModel(), info, filepath.Join(r.cfg.Dir, "linearizability.html"))
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
