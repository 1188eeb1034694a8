package jepsen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
)

// Nemesis classes a run can use.
const (
	NemesisNone      = "none"
	NemesisKill      = "kill"      // kill -9 a node, restart it on its data
	NemesisPause     = "pause"     // SIGSTOP a node, SIGCONT it
	NemesisPartition = "partition" // majority/minority, leader isolated, bridge, one-way
	NemesisTransfer  = "transfer"  // leadership transfers, one after another
	NemesisMember    = "member"    // remove a node (wiping it), add it back empty
	NemesisMixed     = "mixed"     // the above in turn, each round in a random order
	// NemesisIsolate cuts one node (the leader half of the time) from all
	// others; the unsafe-read test uses it.
	NemesisIsolate = "isolate"
)

// Nemeses lists the single classes, for runs that cycle through them.
var Nemeses = []string{NemesisKill, NemesisPause, NemesisPartition, NemesisTransfer, NemesisMember}

// notInjected is the description of a fault the nemesis failed to make.
const notInjected = "(not injected)"

// fault is one injected fault; heal undoes it.
type fault struct {
	desc string
	heal func(ctx context.Context) error
}

// nemesis injects faults into a cluster on a schedule.
type nemesis struct {
	class string
	c     *Cluster
	h     *History
	rng   *rand.Rand
	log   *slog.Logger
	// Fault and quiet periods are drawn from [d, 2d).
	faultFor, quietFor time.Duration
	queue              []string // mixed: the classes left in this round
}

// nextClass picks the class of the next fault.
func (n *nemesis) nextClass() string {
	if n.class != NemesisMixed {
		return n.class
	}
	if len(n.queue) == 0 {
		n.queue = slices.Clone(Nemeses)
		n.rng.Shuffle(len(n.queue), func(a, b int) { n.queue[a], n.queue[b] = n.queue[b], n.queue[a] })
	}
	c := n.queue[0]
	n.queue = n.queue[1:]
	return c
}

// run injects faults until ctx ends, then heals the one in progress.
func (n *nemesis) run(ctx context.Context) {
	if n.class == NemesisNone {
		return
	}
	for {
		if !n.sleep(ctx, n.quietFor) {
			return
		}
		class := n.nextClass()
		// Injection and healing are not cut short by the end of the run:
		// a half-made membership change would leave the cluster in a
		// state the final heal does not know about.
		actx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		rec := n.h.StartFault(class, "")
		f, err := n.inject(actx, class)
		cancel()
		if err != nil {
			n.log.Warn("nemesis could not inject", "class", class, "err", err)
			rec.Desc = notInjected
			n.h.EndFault(rec, err)
			continue
		}
		rec.Desc = f.desc
		n.log.Info("fault", "class", class, "desc", f.desc)
		n.sleep(ctx, n.faultFor)
		hctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err = f.heal(hctx)
		cancel()
		n.h.EndFault(rec, err)
		if err != nil {
			n.log.Warn("nemesis could not heal", "class", class, "desc", f.desc, "err", err)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// sleep waits a random duration in [d, 2d); false if ctx ended first.
func (n *nemesis) sleep(ctx context.Context, d time.Duration) bool {
	sleepCtx(ctx, d+time.Duration(n.rng.Int64N(int64(d)+1)))
	return ctx.Err() == nil
}

func (n *nemesis) inject(ctx context.Context, class string) (fault, error) {
	switch class {
	case NemesisKill:
		return n.kill(ctx)
	case NemesisPause:
		return n.pause(ctx)
	case NemesisPartition:
		return n.partition(ctx)
	case NemesisTransfer:
		return n.transfer(ctx)
	case NemesisMember:
		return n.member(ctx)
	case NemesisIsolate:
		return n.isolate(ctx)
	}
	return fault{}, fmt.Errorf("jepsen: unknown nemesis %q", class)
}

// target picks the leader half of the time, else any available member.
func (n *nemesis) target(ctx context.Context) (int, string, error) {
	if n.rng.IntN(2) == 0 {
		if l := n.c.Leader(ctx); l >= 0 {
			return l, "leader " + n.c.Nodes[l].ID, nil
		}
	}
	var avail []int
	for i := range n.c.Nodes {
		if n.c.Available(i) {
			avail = append(avail, i)
		}
	}
	if len(avail) == 0 {
		return -1, "", errors.New("no available node")
	}
	i := avail[n.rng.IntN(len(avail))]
	return i, n.c.Nodes[i].ID, nil
}

// victims picks the nodes of a process fault: usually one (the leader half
// of the time), sometimes a majority, sometimes every node.
func (n *nemesis) victims(ctx context.Context) ([]int, string, error) {
	var avail []int
	for i := range n.c.Nodes {
		if n.c.Available(i) {
			avail = append(avail, i)
		}
	}
	switch x := n.rng.IntN(10); {
	case x < 6 || len(avail) < len(n.c.Nodes):
		i, who, err := n.target(ctx)
		return []int{i}, who, err
	case x < 8:
		n.rng.Shuffle(len(avail), func(a, b int) { avail[a], avail[b] = avail[b], avail[a] })
		maj := avail[:len(n.c.Nodes)/2+1]
		return maj, "majority " + n.names(maj), nil
	default:
		return avail, "every node " + n.names(avail), nil
	}
}

func (n *nemesis) names(idx []int) string {
	out := make([]string, len(idx))
	for k, i := range idx {
		out[k] = n.c.Nodes[i].ID
	}
	return strings.Join(out, ",")
}

// kill sends SIGKILL: the nodes lose everything not fsynced, then restart
// on their data directories when healed.
func (n *nemesis) kill(ctx context.Context) (fault, error) {
	idx, who, err := n.victims(ctx)
	if err != nil {
		return fault{}, err
	}
	for _, i := range idx {
		if err := n.c.Kill(i); err != nil {
			return fault{}, err
		}
	}
	return fault{desc: "kill -9 " + who, heal: func(context.Context) error {
		var errs []error
		for _, i := range idx {
			errs = append(errs, n.c.Start(i))
		}
		return errors.Join(errs...)
	}}, nil
}

func (n *nemesis) pause(ctx context.Context) (fault, error) {
	idx, who, err := n.victims(ctx)
	if err != nil {
		return fault{}, err
	}
	for _, i := range idx {
		if err := n.c.Pause(i); err != nil {
			return fault{}, err
		}
	}
	return fault{desc: "SIGSTOP " + who, heal: func(context.Context) error {
		var errs []error
		for _, i := range idx {
			errs = append(errs, n.c.Resume(i))
		}
		return errors.Join(errs...)
	}}, nil
}

// partition cuts the network between members in one of four shapes. Most
// faults hold bytes (blackhole) as a real partition does; some reset
// connections instead.
func (n *nemesis) partition(ctx context.Context) (fault, error) {
	ids := make([]string, len(n.c.Nodes))
	for i, nd := range n.c.Nodes {
		ids[i] = nd.ID
	}
	mode := Blackhole
	if n.rng.IntN(4) == 0 {
		mode = Sever
	}
	leader := n.c.Leader(ctx)
	shape := n.rng.IntN(4)
	if leader < 0 && (shape == 1 || shape == 3) {
		shape = 0
	}
	var desc string
	switch shape {
	case 0: // majority / minority
		shuffled := slices.Clone(ids)
		n.rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		minority := shuffled[:(len(ids)-1)/2]
		majority := shuffled[(len(ids)-1)/2:]
		n.c.Net.Partition([][]string{minority, majority}, mode)
		desc = fmt.Sprintf("partition %v | %v", minority, majority)
	case 1: // the leader alone
		others := slices.DeleteFunc(slices.Clone(ids), func(s string) bool { return s == ids[leader] })
		n.c.Net.Partition([][]string{{ids[leader]}, others}, mode)
		desc = fmt.Sprintf("isolate leader %s", ids[leader])
	case 2: // bridge: two halves that both see one node
		shuffled := slices.Clone(ids)
		n.rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		bridge := shuffled[0]
		rest := shuffled[1:]
		left, right := rest[:len(rest)/2], rest[len(rest)/2:]
		n.c.Net.Partition([][]string{left, right}, mode)
		desc = fmt.Sprintf("bridge %s between %v and %v", bridge, left, right)
	case 3: // one way: the leader's messages are lost, it still hears
		for _, id := range ids {
			if id != ids[leader] {
				n.c.Net.Set(ids[leader], id, mode)
			}
		}
		desc = fmt.Sprintf("one-way: nothing from leader %s arrives", ids[leader])
	}
	desc += " (" + mode.String() + ")"
	return fault{desc: desc, heal: func(context.Context) error { n.c.Net.Heal(); return nil }}, nil
}

// isolate cuts one node from all the others, in both directions.
func (n *nemesis) isolate(ctx context.Context) (fault, error) {
	i, who, err := n.target(ctx)
	if err != nil {
		return fault{}, err
	}
	var others []string
	for j, nd := range n.c.Nodes {
		if j != i {
			others = append(others, nd.ID)
		}
	}
	n.c.Net.Partition([][]string{{n.c.Nodes[i].ID}, others}, Blackhole)
	return fault{desc: "isolate " + who + " (blackhole)", heal: func(context.Context) error { n.c.Net.Heal(); return nil }}, nil
}

// transfer moves leadership every 300–600 ms until healed.
func (n *nemesis) transfer(context.Context) (fault, error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var done, failed int
	var lastErr error
	rng := rand.New(rand.NewPCG(n.rng.Uint64(), n.rng.Uint64())) // n.rng stays with the scheduler
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			to := -1
			if rng.IntN(3) > 0 {
				to = rng.IntN(len(n.c.Nodes))
				if !n.c.Available(to) {
					to = -1
				}
			}
			err := n.c.TransferLeadership(ctx, to)
			mu.Lock()
			if err != nil {
				failed++
				lastErr = err
			} else {
				done++
			}
			mu.Unlock()
			sleepCtx(ctx, 300*time.Millisecond+time.Duration(rng.Int64N(int64(300*time.Millisecond))))
		}
	}()
	f := fault{desc: "leadership transfers every 300-600 ms"}
	f.heal = func(context.Context) error {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		n.log.Info("leadership transfers", "done", done, "failed", failed, "last_error", lastErr)
		if done == 0 && lastErr != nil {
			return fmt.Errorf("no transfer succeeded (%d failed): %w", failed, lastErr)
		}
		return nil
	}
	return f, nil
}

// member removes a node from the configuration (wiping its data) and
// adds it back, empty, when healed; the cluster keeps serving meanwhile.
func (n *nemesis) member(ctx context.Context) (fault, error) {
	i, who, err := n.target(ctx)
	if err != nil {
		return fault{}, err
	}
	if err := n.c.RemoveNode(ctx, i); err != nil {
		return fault{}, fmt.Errorf("remove %s: %w", who, err)
	}
	return fault{
		desc: "remove " + who + " (data wiped), then add it back",
		heal: func(ctx context.Context) error { return n.c.AddNode(ctx, i) },
	}, nil
}

// describeNemesis names a class for summaries.
func describeNemesis(class string) string {
	if class == NemesisMixed {
		return "mixed (" + strings.Join(Nemeses, ", ") + ")"
	}
	return class
}
