package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// A figure means little without what it cost and what else ran: the
// machine may be shared, a hypervisor may take CPU away (steal), and a
// cluster's rate is bounded by its CPU and its syncs. So every phase is
// bracketed by two readings of the host's CPU counters, of the target's
// processes (--pids) and, for Rookery, of its nodes' metrics (--metrics),
// and the report prints their difference next to the rates.

// userHZ is the unit of /proc/stat and /proc/PID/stat times: the kernel
// reports them in USER_HZ, 100 on every Linux architecture Go supports.
const userHZ = 100

// Rookery's series the report reads, summed over the nodes given.
const (
	seriesCPU     = "process_cpu_seconds_total"
	seriesCommits = "rookery_raft_commit_duration_seconds_count"    // one per entry, on the leader
	seriesSyncs   = "rookery_disk_log_fsync_duration_seconds_count" // one per log append, on every node
	scrapeTimeout = 2 * time.Second
)

// probe reads one target's resource counters.
type probe struct {
	pids    []int
	metrics []string // URLs of the nodes' Prometheus endpoints
	client  *http.Client
	procDir string // /proc, or a fixture in tests
}

// reading is the counters at one instant.
type reading struct {
	at        time.Time
	busy      float64 // host CPU seconds spent working, all cores
	steal     float64 // host CPU seconds the hypervisor took
	hostOK    bool
	procTicks uint64 // CPU of --pids, in USER_HZ ticks
	procOK    bool
	nodes     nodeMetrics // summed over --metrics
	nodesOK   bool
}

// spend is the difference of two readings.
type spend struct {
	Wall       time.Duration
	BusyCores  float64 // host cores busy on average
	StealCores float64 // host cores taken by the hypervisor on average
	HostOK     bool
	ProcCPU    time.Duration // CPU of --pids
	ProcOK     bool
	NodeCPU    time.Duration     // CPU of the Rookery nodes (--metrics)
	Entries    float64           // raft entries committed
	Syncs      float64           // raft log appends on all nodes
	Timings    map[string]timing // by timingKey, summed over the nodes (breakdown.go)
	NodesOK    bool
}

func (p *probe) read(ctx context.Context) reading {
	r := reading{at: time.Now()}
	r.busy, r.steal, r.hostOK = p.hostCPU()
	if len(p.pids) > 0 {
		r.procTicks, r.procOK = p.pidsCPU()
	}
	if len(p.metrics) > 0 {
		r.nodes, r.nodesOK = p.scrape(ctx)
	}
	return r
}

// since is what was spent from r0 to r1. A counter that could not be read
// at either end is left out rather than guessed.
func since(r0, r1 reading) spend {
	u := spend{Wall: r1.at.Sub(r0.at)}
	secs := u.Wall.Seconds()
	if r0.hostOK && r1.hostOK && secs > 0 {
		u.HostOK = true
		u.BusyCores = (r1.busy - r0.busy) / secs
		u.StealCores = (r1.steal - r0.steal) / secs
	}
	if r0.procOK && r1.procOK {
		u.ProcOK = true
		u.ProcCPU = time.Duration(r1.procTicks-r0.procTicks) * (time.Second / userHZ)
	}
	if r0.nodesOK && r1.nodesOK {
		u.NodesOK = true
		v0, v1 := r0.nodes.values, r1.nodes.values
		u.NodeCPU = seconds(v1[seriesCPU] - v0[seriesCPU])
		u.Entries = v1[seriesCommits] - v0[seriesCommits]
		u.Syncs = v1[seriesSyncs] - v0[seriesSyncs]
		u.Timings = timingsSince(r0.nodes.timings, r1.nodes.timings)
	}
	return u
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// hostCPU reads the first line of /proc/stat: cpu user nice system idle
// iowait irq softirq steal ... (guest time is already inside user).
func (p *probe) hostCPU() (busy, steal float64, ok bool) {
	b, err := os.ReadFile(p.procDir + "/stat")
	if err != nil {
		return 0, 0, false
	}
	return parseHostCPU(b)
}

func parseHostCPU(stat []byte) (busy, steal float64, ok bool) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, false
	}
	var t [8]float64
	for i := range t {
		v, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return 0, 0, false
		}
		t[i] = float64(v) / userHZ
	}
	// user nice system idle iowait irq softirq steal
	return t[0] + t[1] + t[2] + t[5] + t[6], t[7], true
}

// pidsCPU sums user and system time of every process in pids. A process
// that is gone makes the reading invalid: its time would vanish from the
// sum and the difference would be wrong.
func (p *probe) pidsCPU() (uint64, bool) {
	var sum uint64
	for _, pid := range p.pids {
		b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", p.procDir, pid))
		if err != nil {
			return 0, false
		}
		s, ok := parseProcCPU(b)
		if !ok {
			return 0, false
		}
		sum += s
	}
	return sum, true
}

// parseProcCPU reads utime plus stime (fields 14 and 15) of /proc/PID/stat,
// in ticks.
// The command name (field 2) is in parentheses and may hold spaces, so
// fields are counted after its closing parenthesis.
func parseProcCPU(stat []byte) (uint64, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state), so utime is f[11] and stime f[12].
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return u + s, true
}

// scrape sums the series the report needs over every node's endpoint.
// One endpoint that does not answer invalidates the reading.
func (p *probe) scrape(ctx context.Context) (nodeMetrics, bool) {
	sum := newNodeMetrics()
	for _, url := range p.metrics {
		body, err := p.get(ctx, url)
		if err != nil {
			return nodeMetrics{}, false
		}
		m, err := parseNodeMetrics(body)
		if err != nil {
			return nodeMetrics{}, false
		}
		sum.add(m)
	}
	return sum, true
}

// nodeMetrics is what the report reads from Rookery nodes' metrics: the
// series above, and the timings of the breakdown (breakdown.go) by
// timingKey.
type nodeMetrics struct {
	values  map[string]float64
	timings map[string]timing
}

func newNodeMetrics() nodeMetrics {
	return nodeMetrics{values: map[string]float64{}, timings: map[string]timing{}}
}

// add adds o's series and timings to m's (several nodes' make one sum).
func (m nodeMetrics) add(o nodeMetrics) {
	for k, v := range o.values {
		m.values[k] += v
	}
	for k, t := range o.timings {
		m.timings[k] = m.timings[k].plus(t)
	}
}

func (p *probe) get(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}

// parseNodeMetrics picks the series the report needs out of a Prometheus
// text exposition, timings included (readTimings); a series a node does not
// export counts as 0 (a follower has no commit timings).
func parseNodeMetrics(text []byte) (nodeMetrics, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nodeMetrics{}, err
	}
	nm := newNodeMetrics()
	out := nm.values
	if f, ok := families[seriesCPU]; ok {
		for _, m := range f.GetMetric() {
			out[seriesCPU] += m.GetCounter().GetValue()
		}
	}
	for name, series := range map[string]string{
		strings.TrimSuffix(seriesCommits, "_count"): seriesCommits,
		strings.TrimSuffix(seriesSyncs, "_count"):   seriesSyncs,
	} {
		if f, ok := families[name]; ok {
			for _, m := range f.GetMetric() {
				out[series] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	readTimings(families, nm.timings)
	return nm, nil
}
