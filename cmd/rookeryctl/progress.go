package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress draws a progress bar on stderr: redrawn in place on a terminal,
// one line every few seconds otherwise (logs, CI).
type progress struct {
	w       io.Writer
	tty     bool
	label   string
	total   int64 // 0: unknown
	start   time.Time
	mu      sync.Mutex
	last    time.Time
	every   time.Duration
	current func() (done int64, note string)
	stop    chan struct{}
	stopped chan struct{}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// startProgress redraws from current until finish is called.
func startProgress(w io.Writer, label string, total int64, current func() (int64, string)) *progress {
	p := &progress{w: w, tty: isTerminal(w), label: label, total: total, start: time.Now(), current: current,
		stop: make(chan struct{}), stopped: make(chan struct{})}
	p.every = 5 * time.Second
	tick := 5 * time.Second
	if p.tty {
		p.every, tick = 0, 200*time.Millisecond
	}
	go func() {
		defer close(p.stopped)
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.draw(false)
			}
		}
	}()
	return p
}

// finish draws the final state and ends the line.
func (p *progress) finish() {
	close(p.stop)
	<-p.stopped
	p.draw(true)
}

func (p *progress) draw(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	done, note := p.current()
	el := time.Since(p.start)
	rate := float64(done) / max(el.Seconds(), 1e-3)
	var b strings.Builder
	fmt.Fprintf(&b, "%s ", p.label)
	if p.total > 0 {
		frac := min(float64(done)/float64(p.total), 1)
		const width = 30
		n := int(frac * width)
		b.WriteString("[" + strings.Repeat("=", n) + strings.Repeat(" ", width-n) + "] ")
		fmt.Fprintf(&b, "%3.0f%% %d/%d", 100*frac, done, p.total)
		if !final && rate > 0 && done < p.total {
			fmt.Fprintf(&b, " ETA %s", time.Duration(float64(p.total-done)/rate*float64(time.Second)).Round(time.Second))
		}
	} else {
		fmt.Fprintf(&b, "%d", done)
	}
	fmt.Fprintf(&b, " %.0f/s %s", rate, el.Round(100*time.Millisecond))
	if note != "" {
		b.WriteString(" " + note)
	}
	switch {
	case p.tty:
		fmt.Fprintf(p.w, "\r\033[K%s", b.String())
		if final {
			fmt.Fprintln(p.w)
		}
	case final || time.Since(p.last) >= p.every:
		fmt.Fprintln(p.w, b.String())
		p.last = time.Now()
	}
}
