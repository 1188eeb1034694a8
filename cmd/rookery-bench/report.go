package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

func printTarget(out io.Writer, rep *targetReport) {
	fmt.Fprintf(out, "\n== %s (%s) %s\n", rep.Target.Name, rep.Target.Addr, rep.Banner)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tconns\tops\tops/s\tp50\tp99\tmax\terrors\t")
	for _, r := range rep.Rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%d\t\n", r.Phase, r.Conns, len(r.S.lat), r.S.rate(),
			ms(r.S.percentile(0.50)), ms(r.S.percentile(0.99)), ms(r.S.percentile(1)), r.S.errors)
	}
	tw.Flush()
	for _, r := range rep.Rows {
		if r.S.firstErr != nil {
			fmt.Fprintf(out, "  first error in %q at %d conns: %v\n", r.Phase, r.Conns, r.S.firstErr)
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
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "phase\tconns\tops/s\tp50\tp99\t")
		for i, r := range rep.Rows {
			if i >= len(base.Rows) {
				break
			}
			b := base.Rows[i]
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t\n", r.Phase, r.Conns, ratio(r.S.rate(), b.S.rate()),
				ratio(float64(r.S.percentile(0.5)), float64(b.S.percentile(0.5))),
				ratio(float64(r.S.percentile(0.99)), float64(b.S.percentile(0.99))))
		}
		if rep.Stream != nil && base.Stream != nil {
			fmt.Fprintf(tw, "stream delay\t1\t-\t%s\t%s\t\n",
				ratio(float64(rep.Stream.Delay.percentile(0.5)), float64(base.Stream.Delay.percentile(0.5))),
				ratio(float64(rep.Stream.Delay.percentile(0.99)), float64(base.Stream.Delay.percentile(0.99))))
		}
		tw.Flush()
	}
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
