package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rookery/rookery/internal/imapwire"
	"github.com/rookery/rookery/internal/mupdateclient"
)

// streamResult is the stream-delay phase: how long after an ACTIVATE's OK
// the matching MAILBOX line reaches a connection that sent UPDATE.
type streamResult struct {
	DumpEntries int           // entries in UPDATE's initial dump
	DumpTime    time.Duration // UPDATE sent -> "streaming starts"
	Sent        int           // ACTIVATEs answered OK
	Early       int           // MAILBOX line arrived before the ACTIVATE's OK (delay counted as 0)
	Lost        int           // never streamed within StreamWait
	Delay       *sample
}

func (b *bench) stream(ctx context.Context) (*streamResult, error) {
	res := &streamResult{}
	sub, err := b.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	t0 := time.Now()
	dump, err := sub.Update(ctx)
	if err != nil {
		return nil, err
	}
	res.DumpTime, res.DumpEntries = time.Since(t0), len(dump)

	var (
		mu   sync.Mutex
		seen = make(map[string]time.Time)
	)
	rctx, stopReader := context.WithCancel(ctx)
	defer stopReader()
	readerDone := make(chan error, 1)
	go func() {
		for {
			r, err := sub.Next(rctx)
			if err != nil {
				readerDone <- err
				return
			}
			if r.Kind == imapwire.KindMailbox {
				now := time.Now()
				mu.Lock()
				if _, dup := seen[r.Name]; !dup {
					seen[r.Name] = now
				}
				mu.Unlock()
			}
		}
	}()
	if b.cfg.StreamNoop > 0 {
		go func() {
			tick := time.NewTicker(b.cfg.StreamNoop)
			defer tick.Stop()
			for {
				select {
				case <-rctx.Done():
					return
				case <-tick.C:
					if _, err := sub.SendNoop(rctx); err != nil {
						return
					}
				}
			}
		}()
	}

	okAt, err := b.streamWrites(ctx)
	if err != nil {
		return nil, err
	}
	res.Sent = len(okAt)

	// Wait for stragglers.
	deadline := time.Now().Add(b.cfg.StreamWait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		mu.Lock()
		missing := 0
		for name := range okAt {
			if _, ok := seen[name]; !ok {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		select {
		case err := <-readerDone:
			return nil, err
		case <-time.After(10 * time.Millisecond):
		}
	}
	stopReader()

	parts := &sample{}
	mu.Lock()
	for name, ok := range okAt {
		at, found := seen[name]
		switch {
		case !found:
			res.Lost++
		case at.Before(ok):
			res.Early++
			parts.ok(0)
		default:
			parts.ok(at.Sub(ok))
		}
	}
	mu.Unlock()
	res.Delay = merge([]*sample{parts}, 0)
	return res, nil
}

// streamWrites issues RESERVE+ACTIVATE pairs on a second connection, one at a
// time with a pause, and records when each ACTIVATE's OK arrived.
func (b *bench) streamWrites(ctx context.Context) (map[string]time.Time, error) {
	w, err := b.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	okAt := make(map[string]time.Time)
	end := time.Now().Add(b.cfg.StreamDuration)
	for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
		name := b.name("s", 1, 0, i)
		if err := activatePair(ctx, w, name, b.cfg.Location, b.cfg.ACL); err != nil {
			return nil, err
		}
		okAt[name] = time.Now()
		b.remember([]string{name})
		if b.cfg.StreamInterval > 0 {
			time.Sleep(b.cfg.StreamInterval)
		}
	}
	if len(okAt) == 0 {
		return nil, errors.New("no ACTIVATE succeeded")
	}
	return okAt, nil
}

func activatePair(ctx context.Context, c *mupdateclient.Client, name, loc, acl string) error {
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := c.Reserve(octx, name, loc); err != nil {
		return err
	}
	return c.Activate(octx, name, loc, acl)
}
