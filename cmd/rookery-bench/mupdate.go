package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rookery/rookery/internal/mupdateclient"
)

// target is one MUPDATE server under test.
type target struct {
	Name string
	Addr string
}

// mupdateConfig is the mupdate subcommand's settings.
type mupdateConfig struct {
	Targets        []target
	Client         mupdateclient.Config
	Conns          []int
	Duration       time.Duration
	Location       string
	ACL            string
	StreamDuration time.Duration
	StreamInterval time.Duration
	StreamNoop     time.Duration
	StreamWait     time.Duration
	Cleanup        bool
	RunID          string
	// Pids and Metrics name, per target, the processes whose CPU and the
	// Rookery nodes whose metrics each phase reports (resources.go).
	Pids    map[string][]int
	Metrics map[string][]string
	// Limit names the target that stands for the machine's limit
	// (`rookery-bench floor`); the others are also given as shares of it.
	Limit string
	// TargetOrder runs all phases of one target before the next target
	// (--order target) instead of each phase on every target in turn.
	TargetOrder bool
	// Rounds runs the whole list of phases this many times. The disk's
	// speed on a shared host moves by a third within minutes, so one
	// round's ratio can mislead; the ratio tables then also give each
	// phase's median over the rounds.
	Rounds int
}

func defaultMupdateConfig() mupdateConfig {
	return mupdateConfig{
		Client:         mupdateclient.DefaultConfig(),
		Conns:          []int{1, 16, 128},
		Duration:       5 * time.Second,
		Location:       "benchsrv!default",
		ACL:            "benchuser\tlrswipkxtecdan\t",
		StreamDuration: 5 * time.Second,
		StreamInterval: 10 * time.Millisecond,
		StreamWait:     15 * time.Second,
		Rounds:         1,
		Pids:           map[string][]int{},
		Metrics:        map[string][]string{},
	}
}

func parseMupdateFlags(args []string) (mupdateConfig, error) {
	cfg := defaultMupdateConfig()
	fs := flag.NewFlagSet("mupdate", flag.ContinueOnError)
	fs.Func("target", "name=host:port of a MUPDATE server (repeatable; the first is the baseline of the ratio)", func(s string) error {
		t, err := parseTarget(s)
		if err == nil {
			cfg.Targets = append(cfg.Targets, t)
		}
		return err
	})
	fs.StringVar(&cfg.Client.User, "user", cfg.Client.User, "PLAIN user")
	fs.StringVar(&cfg.Client.Password, "pass", cfg.Client.Password, "PLAIN password")
	conns := fs.String("conns", "1,16,128", "comma-separated connection counts")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of each create/find phase")
	fs.StringVar(&cfg.Location, "location", cfg.Location, "server!partition the created mailboxes get (keep it off real backends' names)")
	fs.DurationVar(&cfg.StreamDuration, "stream-duration", cfg.StreamDuration, "how long the stream-delay phase issues ACTIVATEs (0 skips the phase)")
	fs.DurationVar(&cfg.StreamInterval, "stream-interval", cfg.StreamInterval, "pause between ACTIVATEs in the stream-delay phase")
	fs.DurationVar(&cfg.StreamNoop, "stream-noop", 0, "send NOOP on the UPDATE connection this often (0: never, measure what the server pushes by itself; a Cyrus slave NOOPs every few seconds)")
	fs.DurationVar(&cfg.StreamWait, "stream-wait", cfg.StreamWait, "how long to wait for stragglers after the last ACTIVATE")
	fs.BoolVar(&cfg.Cleanup, "cleanup", false, "DELETE every mailbox this run created when done")
	fs.StringVar(&cfg.RunID, "run-id", "", "unique part of the mailbox names (default: random)")
	fs.Func("pids", "name=PID[,PID...]: report the CPU these processes of target name spend in each phase (repeatable)", func(s string) error {
		name, pids, err := parsePids(s)
		if err == nil {
			cfg.Pids[name] = append(cfg.Pids[name], pids...)
		}
		return err
	})
	fs.Func("metrics", "name=URL[,URL...]: Rookery nodes' metrics endpoints; each phase reports their CPU, raft entries and log syncs (repeatable)", func(s string) error {
		name, urls, ok := strings.Cut(s, "=")
		if !ok || name == "" || urls == "" {
			return fmt.Errorf("%q: want name=URL[,URL...]", s)
		}
		cfg.Metrics[name] = append(cfg.Metrics[name], strings.Split(urls, ",")...)
		return nil
	})
	order := fs.String("order", "phase", "phase: each phase on every target in turn, so compared figures are seconds apart; target: all phases of one target, then the next")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "run the list of phases this many times (each phase still on every target in turn); ratios also get the median over the rounds")
	fs.StringVar(&cfg.Limit, "limit", "", "name of the target that is the machine's limit (rookery-bench floor): each other target's share of it is printed too")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if len(cfg.Targets) == 0 {
		return cfg, fmt.Errorf("at least one --target name=host:port is required")
	}
	switch *order {
	case "phase":
	case "target":
		cfg.TargetOrder = true
	default:
		return cfg, fmt.Errorf("--order %q: want phase or target", *order)
	}
	var err error
	if cfg.Conns, err = parseInts(*conns); err != nil {
		return cfg, fmt.Errorf("--conns: %w", err)
	}
	if cfg.Duration <= 0 {
		return cfg, fmt.Errorf("--duration must be positive")
	}
	if cfg.Rounds < 1 {
		return cfg, fmt.Errorf("--rounds must be at least 1")
	}
	named := slices.Concat(slices.Collect(maps.Keys(cfg.Pids)), slices.Collect(maps.Keys(cfg.Metrics)))
	if cfg.Limit != "" {
		named = append(named, cfg.Limit)
	}
	for _, name := range named {
		if !slices.ContainsFunc(cfg.Targets, func(t target) bool { return t.Name == name }) {
			return cfg, fmt.Errorf("--pids/--metrics/--limit name %q is not a --target", name)
		}
	}
	if cfg.RunID == "" {
		cfg.RunID = newRunID()
	}
	if !validRunID(cfg.RunID) {
		return cfg, fmt.Errorf("--run-id %q: use letters and digits only", cfg.RunID)
	}
	return cfg, nil
}

func parseTarget(s string) (target, error) {
	name, addr, ok := strings.Cut(s, "=")
	if !ok || name == "" || addr == "" {
		return target{}, fmt.Errorf("target %q: want name=host:port", s)
	}
	if _, port, ok := strings.Cut(addr, ":"); !ok || port == "" {
		return target{}, fmt.Errorf("target %q: address needs a port", s)
	}
	return target{Name: name, Addr: addr}, nil
}

func parsePids(s string) (string, []int, error) {
	name, list, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return "", nil, fmt.Errorf("%q: want name=PID[,PID...]", s)
	}
	pids, err := parseInts(list)
	if err != nil {
		return "", nil, fmt.Errorf("%q: %w", s, err)
	}
	return name, pids, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func newRunID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func validRunID(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func runMupdate(ctx context.Context, log *slog.Logger, out io.Writer, args []string) error {
	cfg, err := parseMupdateFlags(args)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "rookery-bench mupdate: run %s, %v per phase, conns %v, %d round(s), location %q, load average at start %s\n",
		cfg.RunID, cfg.Duration, cfg.Conns, cfg.Rounds, cfg.Location, loadAvg())
	reports, err := runTargets(ctx, cfg, log)
	if err != nil {
		return err
	}
	for _, rep := range reports {
		printTarget(out, rep)
	}
	printRatios(out, reports)
	printLimitShares(out, reports, cfg.Limit)
	fmt.Fprintf(out, "load average at end %s (the machine may be shared: compare targets within one run)\n", loadAvg())
	return nil
}

// runTargets measures every phase on every target. By default each phase
// runs on all targets before the next phase starts, so the figures a ratio
// compares were taken seconds apart, not minutes: on a shared machine the
// disk and the hypervisor's steal drift within a run. --order target runs
// all phases of one target before the next, as before.
func runTargets(ctx context.Context, cfg mupdateConfig, log *slog.Logger) ([]*targetReport, error) {
	benches := make([]*bench, len(cfg.Targets))
	reports := make([]*targetReport, len(cfg.Targets))
	for i, t := range cfg.Targets {
		benches[i] = newBench(cfg, i, t, log)
		rep, err := benches[i].start(ctx)
		if err != nil {
			return nil, fmt.Errorf("target %s (%s): %w", t.Name, t.Addr, err)
		}
		reports[i] = rep
	}
	phases := phaseList(cfg.Conns, cfg.Rounds)
	each := func(i int, ps []phase) error {
		for _, p := range ps {
			if err := benches[i].measure(ctx, reports[i], p); err != nil {
				return fmt.Errorf("target %s: %w", cfg.Targets[i].Name, err)
			}
		}
		return nil
	}
	if cfg.TargetOrder {
		for i := range benches {
			if err := each(i, phases); err != nil {
				return nil, err
			}
		}
	} else {
		for _, p := range phases {
			for i := range benches {
				if err := each(i, []phase{p}); err != nil {
					return nil, err
				}
			}
		}
	}
	for i, b := range benches {
		if err := b.finish(ctx, reports[i]); err != nil {
			return nil, fmt.Errorf("target %s (%s): %w", cfg.Targets[i].Name, cfg.Targets[i].Addr, err)
		}
	}
	return reports, nil
}

func newBench(cfg mupdateConfig, index int, t target, log *slog.Logger) *bench {
	return &bench{cfg: cfg, target: t, index: index, log: log.With("target", t.Name), probe: &probe{
		pids: cfg.Pids[t.Name], metrics: cfg.Metrics[t.Name], client: http.DefaultClient, procDir: "/proc",
	}}
}

// loadAvg is the 1/5/15-minute load average, to judge how noisy a run was.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}
