package metrics

import (
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	gometrics "github.com/hashicorp/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// raftSink is the go-metrics sink hashicorp/raft reports to. raft emits
// about ten timings and counters per log entry on every node, so a sample
// must cost little: go-metrics' own Prometheus sink joined and rewrote the
// key, built a label string, copied the series and fed a quantile stream
// under a lock for each one, about an eighth of a follower's CPU at one
// MUPDATE connection (NOTES.md, tenth session). Here a sample hashes its key
// and labels without allocating, finds its series in a map, and adds to
// atomic counters; names and label values are built once, when a series
// first appears, and metrics are formed only at scrape time.
//
// Timings (milliseconds, as raft reports them) become histograms with
// millisecond buckets (rawBuckets), which unlike summaries can be summed
// across nodes; counters and gauges stay counters and gauges. Series never
// vanish, so rate() over one that stopped moving stays right.
type raftSink struct {
	commit prometheus.Histogram // also fed by raft.commitTime, in seconds

	mu     sync.RWMutex
	series map[uint64][]*raftSeries // by hash of key and labels
	// families holds the first series of each Prometheus name. A later
	// series under the same name with another kind or other label names
	// is dropped: exported, it would fail every scrape.
	families map[string]*raftSeries
}

// rawBuckets are the upper bounds of raft timing histograms, in
// milliseconds: 0.05 ms to 10 s.
var rawBuckets = prometheus.ExponentialBucketsRange(0.05, 10000, 16)

type seriesKind uint8

const (
	kindSample seriesKind = iota
	kindCounter
	kindGauge
)

// raftSeries is one metric of the sink: a go-metrics key and label set.
type raftSeries struct {
	kind   seriesKind
	name   string // the Prometheus name
	key    []string
	labels []gometrics.Label
	desc   *prometheus.Desc
	values []string // label values, in desc's order
	drop   bool     // a blocked name (perPeerPrefixes): ignored
	commit bool     // raft.commitTime: observed in raftSink.commit too

	count   atomic.Uint64
	sum     atomicFloat // samples' sum; a counter's or gauge's value
	buckets []atomic.Uint64
}

// atomicFloat is a float64 updated without a lock.
type atomicFloat struct{ bits atomic.Uint64 }

func (f *atomicFloat) add(v float64) {
	for {
		old := f.bits.Load()
		if f.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (f *atomicFloat) set(v float64) { f.bits.Store(math.Float64bits(v)) }
func (f *atomicFloat) get() float64  { return math.Float64frombits(f.bits.Load()) }

func newRaftSink(commit prometheus.Histogram) *raftSink {
	return &raftSink{commit: commit, series: make(map[uint64][]*raftSeries), families: make(map[string]*raftSeries)}
}

// AddSampleWithLabels records a timing in milliseconds.
func (s *raftSink) AddSampleWithLabels(key []string, val float32, labels []gometrics.Label) {
	se := s.get(kindSample, key, labels)
	if se.drop {
		return
	}
	v := float64(val)
	se.count.Add(1)
	se.sum.add(v)
	for i, ub := range rawBuckets {
		if v <= ub {
			se.buckets[i].Add(1)
			break
		}
	}
	if se.commit {
		s.commit.Observe(v / 1000)
	}
}

// IncrCounterWithLabels adds val to a counter.
func (s *raftSink) IncrCounterWithLabels(key []string, val float32, labels []gometrics.Label) {
	if se := s.get(kindCounter, key, labels); !se.drop {
		se.sum.add(float64(val))
	}
}

// SetPrecisionGaugeWithLabels sets a gauge.
func (s *raftSink) SetPrecisionGaugeWithLabels(key []string, val float64, labels []gometrics.Label) {
	if se := s.get(kindGauge, key, labels); !se.drop {
		se.sum.set(val)
	}
}

func (s *raftSink) AddSample(key []string, val float32)   { s.AddSampleWithLabels(key, val, nil) }
func (s *raftSink) IncrCounter(key []string, val float32) { s.IncrCounterWithLabels(key, val, nil) }
func (s *raftSink) SetGauge(key []string, val float32)    { s.SetGaugeWithLabels(key, val, nil) }
func (s *raftSink) SetPrecisionGauge(key []string, v float64) {
	s.SetPrecisionGaugeWithLabels(key, v, nil)
}
func (s *raftSink) SetGaugeWithLabels(key []string, val float32, labels []gometrics.Label) {
	s.SetPrecisionGaugeWithLabels(key, float64(val), labels)
}

// EmitKey is not kept: Prometheus has no type for single events, and raft
// does not use it.
func (s *raftSink) EmitKey([]string, float32) {}

// get finds the series of kind, key and labels, creating it on first use.
func (s *raftSink) get(kind seriesKind, key []string, labels []gometrics.Label) *raftSeries {
	h := seriesHash(kind, key, labels)
	s.mu.RLock()
	se := match(s.series[h], kind, key, labels)
	s.mu.RUnlock()
	if se != nil {
		return se
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if se := match(s.series[h], kind, key, labels); se != nil {
		return se
	}
	se = newRaftSeries(kind, key, labels)
	if !se.drop {
		if first, ok := s.families[se.name]; !ok {
			s.families[se.name] = se
		} else if first.kind != se.kind || !sameLabelNames(first.labels, se.labels) {
			se.drop = true
		}
	}
	s.series[h] = append(s.series[h], se)
	return se
}

func match(list []*raftSeries, kind seriesKind, key []string, labels []gometrics.Label) *raftSeries {
	for _, se := range list {
		if se.kind == kind && slices.Equal(se.key, key) && slices.Equal(se.labels, labels) {
			return se
		}
	}
	return nil
}

// sameLabelNames reports whether two label sets have the same names in
// the same order, whatever their values.
func sameLabelNames(a, b []gometrics.Label) bool {
	return slices.EqualFunc(a, b, func(x, y gometrics.Label) bool { return x.Name == y.Name })
}

// seriesHash is FNV-1a over the kind, the key parts and the labels, with a
// separator byte between strings so ("ab","c") and ("a","bc") differ.
func seriesHash(kind seriesKind, key []string, labels []gometrics.Label) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	mix := func(s string) {
		for i := 0; i < len(s); i++ {
			h = (h ^ uint64(s[i])) * prime
		}
		h = (h ^ 0xff) * prime
	}
	h = (h ^ uint64(kind)) * prime
	for _, k := range key {
		mix(k)
	}
	for _, l := range labels {
		mix(l.Name)
		mix(l.Value)
	}
	return h
}

// promName is go-metrics' key as the Prometheus name go-metrics' own sink
// gave it: parts joined by "_", with the characters Prometheus forbids
// turned into "_".
var promName = strings.NewReplacer(" ", "_", ".", "_", "-", "_", "=", "_")

func newRaftSeries(kind seriesKind, key []string, labels []gometrics.Label) *raftSeries {
	se := &raftSeries{
		kind:   kind,
		key:    append([]string(nil), key...),
		labels: append([]gometrics.Label(nil), labels...),
	}
	joined := strings.Join(key, ".")
	for _, p := range perPeerPrefixes {
		if strings.HasPrefix(joined, p) {
			se.drop = true
			return se
		}
	}
	se.commit = kind == kindSample && joined == "raft.commitTime" && len(labels) == 0
	se.name = promName.Replace(strings.Join(key, "_"))
	names := make([]string, len(labels))
	for i, l := range labels {
		names[i] = promName.Replace(l.Name)
		se.values = append(se.values, l.Value)
	}
	se.desc = prometheus.NewDesc(se.name, help(kind, joined), names, nil)
	if kind == kindSample {
		se.buckets = make([]atomic.Uint64, len(rawBuckets))
	}
	return se
}

func help(kind seriesKind, key string) string {
	switch kind {
	case kindSample:
		return "hashicorp/raft timing " + key + ", in milliseconds."
	case kindCounter:
		return "hashicorp/raft counter " + key + "."
	}
	return "hashicorp/raft gauge " + key + "."
}

// Describe sends nothing: the series are known only once raft reports
// them, so the sink is an unchecked collector.
func (s *raftSink) Describe(chan<- *prometheus.Desc) {}

// Collect forms every series' current metric.
func (s *raftSink) Collect(ch chan<- prometheus.Metric) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, list := range s.series {
		for _, se := range list {
			if se.drop {
				continue
			}
			ch <- se.metric()
		}
	}
}

func (se *raftSeries) metric() prometheus.Metric {
	switch se.kind {
	case kindCounter:
		return prometheus.MustNewConstMetric(se.desc, prometheus.CounterValue, se.sum.get(), se.values...)
	case kindGauge:
		return prometheus.MustNewConstMetric(se.desc, prometheus.GaugeValue, se.sum.get(), se.values...)
	}
	// Read the count first: a sample landing meanwhile may then show in a
	// bucket or the sum but not yet in the count, never the other way.
	count := se.count.Load()
	cum := make(map[float64]uint64, len(rawBuckets))
	var n uint64
	for i, ub := range rawBuckets {
		n += se.buckets[i].Load()
		cum[ub] = min(n, count)
	}
	return prometheus.MustNewConstHistogram(se.desc, count, se.sum.get(), cum, se.values...)
}
