package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"text/tabwriter"
	"time"
)

func printTarget(out io.Writer, rep *targetReport) {
	fmt.Fprintf(out, "\n== %s (%s) %s\n", rep.Target.Name, rep.Target.Addr, rep.Banner)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tconns\tops\tops/s\tp50\tp99\tmax\terrors\t")
	for _, r := range rep.Rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%d\t\n", r.label(), r.Conns, len(r.S.lat), r.S.rate(),
			ms(r.S.percentile(0.50)), ms(r.S.percentile(0.99)), ms(r.S.percentile(1)), r.S.errors)
	}
	tw.Flush()
	printSpend(out, rep.Rows)
	printBreakdown(out, rep.Rows)
	for _, r := range rep.Rows {
		if r.S.firstErr != nil {
			fmt.Fprintf(out, "  first error in %q at %d conns: %v\n", r.label(), r.Conns, r.S.firstErr)
		}
	}
	if s := rep.Stream; s != nil {
		fmt.Fprintf(out, "UPDATE initial dump: %d entries in %s\n", s.DumpEntries, ms(s.DumpTime))
		fmt.Fprintf(out, "stream delay (ACTIVATE OK -> streamed MAILBOX): n=%d p50=%s p99=%s max=%s early=%d lost=%d\n",
			s.Sent, ms(s.Delay.percentile(0.50)), ms(s.Delay.percentile(0.99)), ms(s.Delay.percentile(1)), s.Early, s.Lost)
	}
	if c := rep.Cleanup; c != nil {
		fmt.Fprintf(out, "cleanup: %d DELETEs in %s (%.0f/s), errors=%d\n", len(c.lat), ms(c.elapsed), c.rate(), c.errors)
	}
}

// printSpend prints what the host and the target spent in each phase
// (resources.go), so a rate can be read against the machine's limit.
func printSpend(out io.Writer, rows []row) {
	if !slices.ContainsFunc(rows, func(r row) bool { return r.Use.HostOK }) {
		return
	}
	fmt.Fprintf(out, "resources per phase (host: %d cores, busy = user+system+irq; steal = taken by the hypervisor; per op = CPU / ops):\n", runtime.NumCPU())
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tconns\thost busy\tsteal\tprocs ms/op\tnodes ms/op\traft entries\tcmds/entry\tlog syncs/entry\t")
	for _, r := range rows {
		u, ops := r.Use, float64(len(r.S.lat))
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.label(), r.Conns,
			cores(u.HostOK, u.BusyCores), cores(u.HostOK, u.StealCores),
			perOp(u.ProcOK, u.ProcCPU, ops), perOp(u.NodesOK, u.NodeCPU, ops),
			count(u.NodesOK, u.Entries), per(u.NodesOK, ops*float64(writesPerOp(r.Phase)), u.Entries),
			per(u.NodesOK, u.Syncs, u.Entries))
	}
	tw.Flush()
}

// writesPerOp is how many directory writes one operation of a phase sends:
// a create is RESERVE then ACTIVATE; FIND writes nothing.
func writesPerOp(phase string) int {
	if phase == phaseFind {
		return 0
	}
	return 2
}

func cores(ok bool, c float64) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.2f", c)
}

func perOp(ok bool, cpu time.Duration, ops float64) string {
	if !ok || ops == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", float64(cpu)/float64(time.Millisecond)/ops)
}

func count(ok bool, n float64) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.0f", n)
}

func per(ok bool, a, b float64) string {
	if !ok || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// printRatios compares every target with the first one (the baseline,
// normally the real Cyrus master).
func printRatios(out io.Writer, reps []*targetReport) {
	if len(reps) < 2 {
		fmt.Fprintf(out, "\n(only one target: no ratio; add --target rookery=HOST:PORT to compare)\n")
		return
	}
	base := reps[0]
	for _, rep := range reps[1:] {
		fmt.Fprintf(out, "\n== ratio %s/%s (ops/s: >1 means %s is faster; latency: <1 means %s is faster)\n",
			rep.Target.Name, base.Target.Name, rep.Target.Name, rep.Target.Name)
		printRatio(out, base, rep)
	}
}

// printLimitShares gives each target but the baseline as a share of the
// target named limit, the machine's limit (rookery-bench floor).
func printLimitShares(out io.Writer, reps []*targetReport, limit string) {
	i := slices.IndexFunc(reps, func(r *targetReport) bool { return r.Target.Name == limit })
	if limit == "" || i < 0 {
		return
	}
	for j, rep := range reps {
		if j == 0 || j == i {
			continue
		}
		fmt.Fprintf(out, "\n== share of the machine's limit: %s/%s (ops/s: 1 means %s reaches the limit)\n",
			rep.Target.Name, limit, rep.Target.Name)
		printRatio(out, reps[i], rep)
	}
}

func printRatio(out io.Writer, base, rep *targetReport) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tconns\tops/s\tp50\tp99\t")
	for i, r := range rep.Rows {
		if i >= len(base.Rows) {
			break
		}
		b := base.Rows[i]
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t\n", r.label(), r.Conns, ratio(r.S.rate(), b.S.rate()),
			ratio(float64(r.S.percentile(0.5)), float64(b.S.percentile(0.5))),
			ratio(float64(r.S.percentile(0.99)), float64(b.S.percentile(0.99))))
	}
	for _, m := range roundMedians(base.Rows, rep.Rows) {
		fmt.Fprintf(tw, "%s, median of %d\t%d\t%.2f\t%.2f\t%.2f\t\n", m.phase, m.rounds, m.conns, m.rate, m.p50, m.p99)
	}
	if rep.Stream != nil && base.Stream != nil {
		fmt.Fprintf(tw, "stream delay\t1\t-\t%s\t%s\t\n",
			ratio(float64(rep.Stream.Delay.percentile(0.5)), float64(base.Stream.Delay.percentile(0.5))),
			ratio(float64(rep.Stream.Delay.percentile(0.99)), float64(base.Stream.Delay.percentile(0.99))))
	}
	tw.Flush()
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// ms formats a duration in milliseconds with enough precision for
// sub-millisecond loopback latencies.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

// roundMedian is one phase's ratio, rep to base, as the median of its
// rounds' ratios.
type roundMedian struct {
	phase          string
	conns, rounds  int
	rate, p50, p99 float64
}

// roundMedians pairs rows measured in the same round and gives, per phase
// measured in more than one round, the median of the rounds' ratios (rate,
// p50, p99), in the order the phases first ran. Each round's ratio
// compares figures taken seconds apart, so the median is robust against
// the host's drift between rounds.
func roundMedians(base, rep []row) []roundMedian {
	type key struct {
		phase string
		conns int
	}
	var order []key
	ratios := map[key][][3]float64{}
	for i, r := range rep {
		if i >= len(base) || r.Round == 0 {
			continue
		}
		b := base[i]
		if b.S.rate() == 0 || b.S.percentile(0.5) == 0 || b.S.percentile(0.99) == 0 {
			continue
		}
		k := key{r.Phase, r.Conns}
		if _, seen := ratios[k]; !seen {
			order = append(order, k)
		}
		ratios[k] = append(ratios[k], [3]float64{r.S.rate() / b.S.rate(),
			float64(r.S.percentile(0.5)) / float64(b.S.percentile(0.5)),
			float64(r.S.percentile(0.99)) / float64(b.S.percentile(0.99))})
	}
	var out []roundMedian
	for _, k := range order {
		rs := ratios[k]
		if len(rs) < 2 {
			continue
		}
		m := roundMedian{phase: k.phase, conns: k.conns, rounds: len(rs)}
		m.rate, m.p50, m.p99 = median(rs, 0), median(rs, 1), median(rs, 2)
		out = append(out, m)
	}
	return out
}

// median is the median of column c of rs (the mean of the middle two for
// an even count).
func median(rs [][3]float64, c int) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = r[c]
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}
