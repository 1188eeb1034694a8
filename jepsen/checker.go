package jepsen

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Observations is everything a run recorded: the client history, the
// faults, every Watch and UPDATE stream, and each node's directory after
// the faults healed.
type Observations struct {
	Ops     []Op
	Faults  []Fault
	Watches []WatchSession
	Updates []UpdateSession
	Final   []NodeState
	// FinalRevision is the highest revision any node reached after
	// healing: every stream must get there.
	FinalRevision uint64
}

// Anomaly kinds. Each is a property a correct directory cannot violate.
const (
	// The history has no linearization under the Cyrus semantics.
	AnomalyNonlinearizable = "nonlinearizable"
	// An acknowledged write is not in the committed log.
	AnomalyLostWrite = "lost-write"
	// Two acknowledged gRPC writes report the same revision.
	AnomalyDuplicateRevision = "duplicate-revision"
	// A write committed at a revision not above one acknowledged (written
	// or read) before it was invoked.
	AnomalyRevisionOrder = "revision-order"
	// A read served a revision older than one acknowledged before it was
	// invoked.
	AnomalyStaleRead = "stale-read"
	// Two RESERVEs at different locations both succeeded with nothing
	// that could free the name between them.
	AnomalyDoubleReserve = "double-reserve"
	// The committed log holds a change the command semantics forbid.
	AnomalyInvalidTransition = "invalid-transition"
	// Two streams delivered different changes for one revision.
	AnomalyLogDivergence = "log-divergence"
	// No stream delivered some revision below the final one.
	AnomalyLogHole = "log-hole"
	// A Watch stream skipped or repeated a revision.
	AnomalyWatchGap = "watch-gap"
	AnomalyWatchDup = "watch-dup"
	// A Watch stream did not reach the final revision after healing.
	AnomalyWatchLag = "watch-lag"
	// A MUPDATE UPDATE stream's dump and changes are not a prefix of the
	// committed log.
	AnomalyUpdateMismatch = "update-mismatch"
	// A NOOP's OK came before the stream held a write acknowledged before
	// the NOOP was sent.
	AnomalyUpdateBarrier = "update-barrier"
	// A node's directory after healing differs from the committed log.
	AnomalyNodeDivergence = "node-divergence"
	// A node did not come back to the final revision after healing.
	AnomalyNotRecovered = "not-recovered"
	// A node answered a well-formed request with an internal error, a
	// protocol violation or a refusal the run's admin identity must not get.
	AnomalyServerError = "server-error"
)

// Anomaly is one violation, with the ops that show it.
type Anomaly struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
	Ops    []int  `json:"ops,omitempty"`
}

// CheckConfig bounds the checker.
type CheckConfig struct {
	// LinearizabilityTimeout bounds porcupine; past it the result is
	// Unknown, which a run reports as not verified.
	LinearizabilityTimeout time.Duration
	// MaxDetails caps the anomalies kept per kind (all are counted).
	MaxDetails int
}

// DefaultCheckConfig gives porcupine two minutes.
func DefaultCheckConfig() CheckConfig {
	return CheckConfig{LinearizabilityTimeout: 2 * time.Minute, MaxDetails: 20}
}

// Report is the verdict on one run.
type Report struct {
	Ops, OK, Fail, Unknown int
	// ByProto counts ops per protocol.
	ByProto map[string]int
	// Faults counts the faults injected, FaultsByClass per nemesis class;
	// FaultErrors the faults that could not be injected or healed.
	Faults        int
	FaultsByClass map[string]int
	FaultErrors   int
	// Checked is how many ops went into porcupine.
	Checked      int
	Linearizable porcupine.CheckResult
	CheckTime    time.Duration
	Anomalies    []Anomaly
	// Counts is the number of anomalies per kind (including those not
	// kept in Anomalies).
	Counts map[string]int
	// Revisions is the final revision; WatchEvents and UpdateLines count
	// what the streams delivered.
	Revisions   uint64
	WatchEvents int
	UpdateLines int
	Barriers    int

	info porcupine.LinearizationInfo
}

// Valid reports whether the run showed no anomaly and porcupine proved
// the history linearizable.
func (r *Report) Valid() bool {
	return r.Linearizable == porcupine.Ok && r.AnomalyCount() == 0
}

// AnomalyCount is the number of anomalies of every kind.
func (r *Report) AnomalyCount() int {
	n := 0
	for _, c := range r.Counts {
		n += c
	}
	return n
}

// Summary is the one-line verdict.
func (r *Report) Summary() string {
	var kinds []string
	for k, c := range r.Counts {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, c))
	}
	sort.Strings(kinds)
	anom := "none"
	if len(kinds) > 0 {
		anom = strings.Join(kinds, " ")
	}
	var classes []string
	for k, c := range r.FaultsByClass {
		classes = append(classes, fmt.Sprintf("%s=%d", k, c))
	}
	sort.Strings(classes)
	faults := fmt.Sprintf("%d (%s", r.Faults, strings.Join(classes, " "))
	if r.FaultErrors > 0 {
		faults += fmt.Sprintf("; %d failed to inject or heal", r.FaultErrors)
	}
	faults += ")"
	return fmt.Sprintf("ops=%d ok=%d fail=%d unknown=%d (grpc=%d mupdate=%d) faults=%s revisions=%d watch-events=%d update-lines=%d noop-barriers=%d linearizable=%s (%d ops checked in %s) anomalies: %s",
		r.Ops, r.OK, r.Fail, r.Unknown, r.ByProto["grpc"], r.ByProto["mupdate"], faults,
		r.Revisions, r.WatchEvents, r.UpdateLines, r.Barriers, r.Linearizable, r.Checked,
		r.CheckTime.Round(time.Millisecond), anom)
}

func (r *Report) add(max int, kind, format string, ops []int, args ...any) {
	if r.Counts == nil {
		r.Counts = map[string]int{}
	}
	r.Counts[kind]++
	if r.Counts[kind] <= max {
		r.Anomalies = append(r.Anomalies, Anomaly{Kind: kind, Detail: fmt.Sprintf(format, args...), Ops: ops})
	}
}

// Check runs every checker over a run's observations.
func Check(obs Observations, cfg CheckConfig) *Report {
	if cfg.MaxDetails <= 0 {
		cfg.MaxDetails = 20
	}
	r := &Report{ByProto: map[string]int{}, FaultsByClass: map[string]int{}, Counts: map[string]int{}, Revisions: obs.FinalRevision}
	for _, f := range obs.Faults {
		if f.Err != "" {
			r.FaultErrors++
		}
		if f.Desc != notInjected {
			r.Faults++
			r.FaultsByClass[f.Nemesis]++
		}
	}
	c := &checker{cfg: cfg, r: r, obs: obs}
	for _, op := range obs.Ops {
		r.Ops++
		r.ByProto[op.Proto]++
		if op.ServerError {
			c.anomaly(AnomalyServerError, []int{op.ID}, "op %d %s %s(%s) on %s: %s", op.ID, op.Proto, op.Kind, op.Name, op.Node, op.Err)
		}
		switch op.Outcome {
		case OK:
			r.OK++
		case Fail:
			r.Fail++
		default:
			r.Unknown++
		}
	}
	c.linearizability()
	c.buildLog()
	c.checkLog()
	c.checkWatches()
	c.checkUpdates()
	c.checkFinal()
	c.checkAckedWrites()
	c.checkRevisionOrder()
	c.checkReservations()
	return r
}

type checker struct {
	cfg CheckConfig
	r   *Report
	obs Observations

	log    map[uint64]Event
	upTo   uint64               // the log is complete from 1 to upTo
	states []map[string]mailbox // states[i]: the directory at revision i, i <= upTo
}

func (c *checker) anomaly(kind string, ops []int, format string, args ...any) {
	c.r.add(c.cfg.MaxDetails, kind, format, ops, args...)
}

func (c *checker) linearizability() {
	ops := porcupineOps(c.obs.Ops)
	c.r.Checked = len(ops)
	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(DirectoryModel(), ops, c.cfg.LinearizabilityTimeout)
	c.r.CheckTime = time.Since(start)
	c.r.Linearizable = res
	c.r.info = info
	if res == porcupine.Illegal {
		c.anomaly(AnomalyNonlinearizable, nil, "porcupine found no linearization (see linearizability.html)")
	}
}

// buildLog merges the Watch streams into the committed log, one event per
// revision, and derives the directory at every revision.
func (c *checker) buildLog() {
	c.log = map[uint64]Event{}
	seenBy := map[uint64]string{}
	for _, s := range c.obs.Watches {
		for _, e := range s.Events {
			c.r.WatchEvents++
			prev, ok := c.log[e.Revision]
			if !ok {
				c.log[e.Revision] = e
				seenBy[e.Revision] = s.Watcher + "@" + s.Node
				continue
			}
			if prev != e {
				c.anomaly(AnomalyLogDivergence, nil, "revision %d: %s delivered %+v, %s@%s delivered %+v",
					e.Revision, seenBy[e.Revision], prev, s.Watcher, s.Node, e)
			}
		}
	}
	c.states = []map[string]mailbox{{}}
	for rev := uint64(1); rev <= c.obs.FinalRevision; rev++ {
		e, ok := c.log[rev]
		if !ok {
			c.anomaly(AnomalyLogHole, nil, "no stream delivered revision %d (final revision %d)", rev, c.obs.FinalRevision)
			break
		}
		next := cloneState(c.states[rev-1])
		if e.Delete {
			delete(next, e.Name)
		} else {
			next[e.Name] = e.after()
		}
		c.states = append(c.states, next)
		c.upTo = rev
	}
	for rev := range c.log {
		if rev > c.obs.FinalRevision {
			c.anomaly(AnomalyLogHole, nil, "a stream delivered revision %d beyond the final revision %d", rev, c.obs.FinalRevision)
		}
	}
}

func cloneState(m map[string]mailbox) map[string]mailbox {
	out := make(map[string]mailbox, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// checkLog replays the committed log with the command semantics: every
// change must be one the directory may make, with consistent revisions.
func (c *checker) checkLog() {
	created := map[string]uint64{}
	for rev := uint64(1); rev <= c.upTo; rev++ {
		e := c.log[rev]
		s := c.states[rev-1][e.Name]
		var bad []string
		code, next := decide(s, modelInput{Kind: e.Op, Name: e.Name, Loc: e.Loc, ACL: e.ACL})
		switch {
		case code != CodeOK:
			bad = append(bad, fmt.Sprintf("%s on %s is refused (%s) by the semantics", e.Op, s, code))
		case e.Delete != (e.Op == KindDelete):
			bad = append(bad, "event type does not match its op")
		case !e.Delete && next != e.after():
			bad = append(bad, fmt.Sprintf("%s on %s must give %s, the log has %s", e.Op, s, next, e.after()))
		case e.Delete && (e.Loc != s.Loc || e.State != s.State):
			bad = append(bad, fmt.Sprintf("DELETE event carries %s %s, the entry was %s", e.State, e.Loc, s))
		}
		if !e.Delete {
			if e.ModRevision != rev {
				bad = append(bad, fmt.Sprintf("mod_revision %d", e.ModRevision))
			}
			want := rev
			if s.exists() {
				want = created[e.Name]
			}
			if e.CreateRevision != want {
				bad = append(bad, fmt.Sprintf("create_revision %d, want %d", e.CreateRevision, want))
			}
			created[e.Name] = e.CreateRevision
		}
		if s.exists() && !e.Delete && e.PrevLoc != s.Loc {
			bad = append(bad, fmt.Sprintf("prev_location %q, want %q", e.PrevLoc, s.Loc))
		}
		if len(bad) > 0 {
			c.anomaly(AnomalyInvalidTransition, nil, "revision %d (%s %s): %s", rev, e.Op, e.Name, strings.Join(bad, "; "))
		}
	}
}

// checkWatches checks each watcher's streams, joined across reconnects:
// dense revisions without gap or repeat, up to the final revision.
func (c *checker) checkWatches() {
	byWatcher := map[string][]WatchSession{}
	var names []string
	for _, s := range c.obs.Watches {
		if _, ok := byWatcher[s.Watcher]; !ok {
			names = append(names, s.Watcher)
		}
		byWatcher[s.Watcher] = append(byWatcher[s.Watcher], s)
	}
	sort.Strings(names)
	for _, w := range names {
		var last uint64
		started := false
		for _, s := range byWatcher[w] {
			if s.Reset || !started {
				last = s.Start
				started = true
			} else if s.Start != 0 && s.Start != last {
				c.anomaly(AnomalyWatchGap, nil, "%s: resumed at revision %d on %s, but had seen up to %d", w, s.Start, s.Node, last)
				last = s.Start
			}
			for _, e := range s.Events {
				switch {
				case e.Revision <= last:
					c.anomaly(AnomalyWatchDup, nil, "%s on %s: revision %d delivered after %d", w, s.Node, e.Revision, last)
					continue
				case e.Revision > last+1:
					c.anomaly(AnomalyWatchGap, nil, "%s on %s: revision %d follows %d", w, s.Node, e.Revision, last)
				}
				last = e.Revision
			}
		}
		if last != c.obs.FinalRevision {
			c.anomaly(AnomalyWatchLag, nil, "%s ended at revision %d after healing, final revision is %d", w, last, c.obs.FinalRevision)
		}
	}
}

// checkUpdates checks every MUPDATE UPDATE session: its dump must be the
// directory at some revision r0, the changes that follow must be the log's
// changes r0+1, r0+2, ... in order, and each NOOP's OK must come once the
// stream has reached every revision acknowledged before the NOOP was sent.
func (c *checker) checkUpdates() {
	for i := range c.obs.Updates {
		s := &c.obs.Updates[i]
		dump := map[string]mailbox{}
		for _, m := range s.Dump {
			dump[m.Name] = mailbox{State: m.State, Loc: m.Loc, ACL: m.ACL}
		}
		for _, it := range s.Items {
			if it.Kind == "noop" {
				c.r.Barriers++
			} else {
				c.r.UpdateLines++
			}
		}
		matched, barrierFail := false, ""
		for r0 := uint64(0); r0 <= c.upTo && !matched; r0++ {
			if !mapsEqual(c.states[r0], dump) {
				continue
			}
			ok, why := c.followsLog(s, r0)
			if !ok {
				continue
			}
			if why != "" {
				barrierFail = why
				continue
			}
			matched = true
		}
		switch {
		case matched:
		case barrierFail != "":
			c.anomaly(AnomalyUpdateBarrier, nil, "%s on %s: %s", s.Streamer, s.Node, barrierFail)
		default:
			c.anomaly(AnomalyUpdateMismatch, nil, "%s on %s: the dump (%d entries) and %d streamed items are not a prefix of the log (log complete to %d)",
				s.Streamer, s.Node, len(s.Dump), len(s.Items), c.upTo)
		}
	}
}

// followsLog checks a session's items against the log from r0. ok is false
// when the changes are not the log's; a non-empty why names a NOOP barrier
// that was not honoured.
func (c *checker) followsLog(s *UpdateSession, r0 uint64) (ok bool, why string) {
	rev := r0
	for _, it := range s.Items {
		if it.Kind == "noop" {
			if rev < it.Acked && why == "" {
				why = fmt.Sprintf("NOOP sent at %s answered OK at %s with the stream at revision %d, but revision %d was acknowledged before it was sent",
					time.Duration(it.SentAt), time.Duration(it.OKAt), rev, it.Acked)
			}
			if it.FinalRev != 0 && rev != it.FinalRev && why == "" {
				why = fmt.Sprintf("the NOOP after healing was answered with the stream at revision %d, final revision %d", rev, it.FinalRev)
			}
			continue
		}
		rev++
		if rev > c.upTo {
			return false, ""
		}
		if !updateMatches(it, c.log[rev]) {
			return false, ""
		}
	}
	return true, why
}

func updateMatches(it UpdateItem, e Event) bool {
	if it.Name != e.Name {
		return false
	}
	switch it.Kind {
	case "delete":
		return e.Delete
	case "reserve":
		return !e.Delete && e.State == StateReserved && e.Loc == it.Loc
	case "mailbox":
		return !e.Delete && e.State == StateActive && e.Loc == it.Loc && e.ACL == it.ACL
	}
	return false
}

func mapsEqual(a, b map[string]mailbox) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// checkFinal compares every node's directory after healing with the log.
func (c *checker) checkFinal() {
	if c.upTo != c.obs.FinalRevision {
		return // the log is incomplete; reported already
	}
	want := c.states[c.upTo]
	for _, n := range c.obs.Final {
		if n.Err != "" {
			c.anomaly(AnomalyNotRecovered, nil, "%s: %s", n.Node, n.Err)
			continue
		}
		if n.Revision != c.obs.FinalRevision {
			c.anomaly(AnomalyNotRecovered, nil, "%s is at revision %d, final revision %d", n.Node, n.Revision, c.obs.FinalRevision)
			continue
		}
		got := map[string]mailbox{}
		for _, m := range n.Entries {
			got[m.Name] = mailbox{State: m.State, Loc: m.Loc, ACL: m.ACL}
		}
		if !mapsEqual(got, want) {
			c.anomaly(AnomalyNodeDivergence, nil, "%s at revision %d holds %v, the log gives %v", n.Node, n.Revision, got, want)
		}
	}
}

// writeKey identifies what a write asked for, to match it with a change.
type writeKey struct {
	Op             Kind
	Name, Loc, ACL string
}

func opKey(op *Op) writeKey {
	k := writeKey{Op: op.Kind, Name: op.Name}
	switch op.Kind {
	case KindReserve, KindDeactivate:
		k.Loc = op.Loc
	case KindActivate:
		k.Loc, k.ACL = op.Loc, op.ACL
	}
	return k
}

func eventKey(e Event) writeKey {
	k := writeKey{Op: e.Op, Name: e.Name}
	switch e.Op {
	case KindReserve, KindDeactivate:
		k.Loc = e.Loc
	case KindActivate:
		k.Loc, k.ACL = e.Loc, e.ACL
	}
	return k
}

// checkAckedWrites: every acknowledged write is in the committed log. A
// gRPC write names its revision, so the change there must be it; MUPDATE
// writes carry none, so each must find a change of its own among those
// with the same command that no gRPC write claimed.
func (c *checker) checkAckedWrites() {
	available := map[writeKey]int{}
	for rev := uint64(1); rev <= c.upTo; rev++ {
		available[eventKey(c.log[rev])]++
	}
	byRev := map[uint64]int{}
	var mupdate []*Op
	for i := range c.obs.Ops {
		op := &c.obs.Ops[i]
		if op.Outcome != OK || !op.Kind.IsWrite() {
			continue
		}
		if op.Proto != "grpc" {
			mupdate = append(mupdate, op)
			continue
		}
		if other, dup := byRev[op.Revision]; dup {
			c.anomaly(AnomalyDuplicateRevision, []int{other, op.ID}, "ops %d and %d were both acknowledged at revision %d", other, op.ID, op.Revision)
			continue
		}
		byRev[op.Revision] = op.ID
		e, ok := c.log[op.Revision]
		if !ok || op.Revision > c.upTo || eventKey(e) != opKey(op) {
			c.anomaly(AnomalyLostWrite, []int{op.ID}, "op %d %s(%s %s) acknowledged at revision %d; the log has %+v there", op.ID, op.Kind, op.Name, op.Loc, op.Revision, e)
			continue
		}
		available[opKey(op)]--
	}
	for _, op := range mupdate {
		k := opKey(op)
		if available[k] <= 0 {
			c.anomaly(AnomalyLostWrite, []int{op.ID}, "op %d MUPDATE %s(%s %s %q) was acknowledged but no unclaimed change in the log matches it", op.ID, op.Kind, op.Name, op.Loc, op.ACL)
			continue
		}
		available[k]--
	}
}

// checkRevisionOrder: revisions follow real time. A gRPC write must commit
// above every revision acknowledged (by a write or a read) before it was
// invoked, and a read must be served at or above it.
func (c *checker) checkRevisionOrder() {
	var ops []*Op
	for i := range c.obs.Ops {
		op := &c.obs.Ops[i]
		if op.Proto == "grpc" && op.Outcome == OK && op.Revision > 0 {
			ops = append(ops, op)
		}
	}
	byInvoke := slices.Clone(ops)
	sort.Slice(byInvoke, func(i, j int) bool { return byInvoke[i].Invoke < byInvoke[j].Invoke })
	byComplete := slices.Clone(ops)
	sort.Slice(byComplete, func(i, j int) bool { return byComplete[i].Complete < byComplete[j].Complete })
	var maxRev uint64
	var maxOp *Op
	j := 0
	for _, b := range byInvoke {
		for j < len(byComplete) && byComplete[j].Complete < b.Invoke {
			if a := byComplete[j]; a.Revision > maxRev {
				maxRev, maxOp = a.Revision, a
			}
			j++
		}
		if maxOp == nil {
			continue
		}
		switch {
		case b.Kind.IsWrite() && b.Revision <= maxRev:
			c.anomaly(AnomalyRevisionOrder, []int{maxOp.ID, b.ID}, "op %d %s committed at revision %d, but op %d (%s, revision %d) completed before it was invoked",
				b.ID, b.Kind, b.Revision, maxOp.ID, maxOp.Kind, maxRev)
		case !b.Kind.IsWrite() && b.Revision < maxRev:
			c.anomaly(AnomalyStaleRead, []int{maxOp.ID, b.ID}, "op %d get(%s) on %s served revision %d, but op %d (%s, revision %d) completed before it was invoked",
				b.ID, b.Name, b.Node, b.Revision, maxOp.ID, maxOp.Kind, maxRev)
		}
	}
}

// checkReservations is the exclusive-reservation invariant, stated on
// what clients saw: if RESERVEs of one name at different locations L1 and
// L2 were both acknowledged, then something able to free the name for L2
// — a DELETE, or an ACTIVATE or DEACTIVATE naming L2, acknowledged or of
// unknown outcome — must be able to fall between them. A RESERVE at the
// location the entry already has succeeds in Cyrus (it resets the entry)
// and is not a second reservation, which is why only different locations
// conflict. An operation of unknown outcome may take effect at any time
// after it was invoked, also after its client gave up (a request held in
// a partition reaches the leader when it heals), so its releasing window
// never closes.
func (c *checker) checkReservations() {
	type interval struct{ inv, comp int64 }
	reserves := map[string][]*Op{}
	// releasers[name][loc]: sorted by invocation, with a running maximum
	// of completion. loc "" holds DELETEs, which free the name for all.
	type relList struct {
		inv     []int64
		maxComp []int64
	}
	raw := map[string]map[string][]interval{}
	for i := range c.obs.Ops {
		op := &c.obs.Ops[i]
		if op.Kind == KindReserve && op.Outcome == OK {
			reserves[op.Name] = append(reserves[op.Name], op)
		}
		if op.Outcome != OK && op.Outcome != Unknown {
			continue
		}
		loc := ""
		switch op.Kind {
		case KindDelete:
		case KindActivate, KindDeactivate:
			loc = op.Loc
		default:
			continue
		}
		if raw[op.Name] == nil {
			raw[op.Name] = map[string][]interval{}
		}
		comp := op.Complete
		if op.Outcome == Unknown {
			comp = math.MaxInt64
		}
		raw[op.Name][loc] = append(raw[op.Name][loc], interval{op.Invoke, comp})
	}
	rel := map[string]map[string]relList{}
	for name, byLoc := range raw {
		rel[name] = map[string]relList{}
		for loc, ivs := range byLoc {
			sort.Slice(ivs, func(i, j int) bool { return ivs[i].inv < ivs[j].inv })
			var l relList
			var m int64 = math.MinInt64
			for _, iv := range ivs {
				m = max(m, iv.comp)
				l.inv = append(l.inv, iv.inv)
				l.maxComp = append(l.maxComp, m)
			}
			rel[name][loc] = l
		}
	}
	// freed reports whether a releaser of name for loc can lie strictly
	// inside (from, to).
	freed := func(name, loc string, from, to int64) bool {
		for _, key := range []string{"", loc} {
			l, ok := rel[name][key]
			if !ok {
				continue
			}
			k := sort.Search(len(l.inv), func(i int) bool { return l.inv[i] > to }) // releasers invoked by `to`
			if k > 0 && l.maxComp[k-1] >= from {
				return true
			}
		}
		return false
	}
	for name, rs := range reserves {
		for i := 0; i < len(rs); i++ {
			for j := i + 1; j < len(rs); j++ {
				a, b := rs[i], rs[j]
				if a.Loc == b.Loc {
					continue
				}
				// a first, then b: needs a releaser for b's location
				// between a's start and b's end; or the other way round.
				abOK := a.Invoke <= b.Complete && freed(name, b.Loc, a.Invoke, b.Complete)
				baOK := b.Invoke <= a.Complete && freed(name, a.Loc, b.Invoke, a.Complete)
				if !abOK && !baOK {
					c.anomaly(AnomalyDoubleReserve, []int{a.ID, b.ID}, "%s: RESERVE at %s (op %d) and at %s (op %d) both succeeded with nothing able to free the name between them",
						name, a.Loc, a.ID, b.Loc, b.ID)
				}
			}
		}
	}
}
