package floor

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"

	"github.com/rookery/rookery/fsm"
)

// Follower keeps a copy of the leader's writes: each run of frames that
// arrived together is written as one record, synced once, applied to its
// own store and acknowledged by its last sequence number. Its Replica
// serves a front end on the follower by forwarding to the leader.
type Follower struct {
	token []byte
	disk  *disk
	store *fsm.Store
	fwd   *Forwarder
	log   *slog.Logger
}

// NewFollower opens the follower's log in dir. Peers must present token.
func NewFollower(dir string, token []byte, log *slog.Logger) (*Follower, error) {
	if len(token) != TokenSize {
		return nil, errors.New("floor: token must be 32 bytes")
	}
	d, err := openDisk(filepath.Join(dir, "floor.log"))
	if err != nil {
		return nil, err
	}
	store := fsm.New(fsm.DefaultConfig())
	return &Follower{token: token, disk: d, store: store, fwd: newForwarder(store), log: log}, nil
}

// Store is the follower's applied state. Only the log link applies to it,
// one stream at a time; reading it concurrently is safe (fsm.Store).
func (f *Follower) Store() *fsm.Store { return f.store }

// Replica is the follower's directory.Replica, for a front end on the
// follower: directory.NewService(f.Replica(), f.Store()).
func (f *Follower) Replica() *Forwarder { return f.fwd }

// Serve answers the leader's links on ln until ctx ends.
func (f *Follower) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var logMu sync.Mutex // one log stream at a time
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return f.disk.close()
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			kind, err := acceptLink(c, f.token)
			if err != nil {
				f.log.Warn("floor: refused a link", "from", c.RemoteAddr(), "err", err)
				return
			}
			switch kind {
			case kindLog:
				logMu.Lock()
				defer logMu.Unlock()
				err = f.serveLog(c)
			case kindPing:
				err = servePing(c)
			case kindForward:
				err = f.fwd.serve(ctx, c)
			default:
				err = fmt.Errorf("floor: unknown link kind %q", kind)
			}
			if err != nil && !errors.Is(err, io.EOF) && ctx.Err() == nil {
				f.log.Warn("floor: link ended", "err", err)
			}
		}()
	}
}

func (f *Follower) serveLog(c net.Conn) error {
	r := bufio.NewReaderSize(c, 1<<20)
	var (
		seqs     []uint64
		payloads [][]byte
		ack      [8]byte
	)
	for {
		seqs, payloads = seqs[:0], payloads[:0]
		seq, p, err := readFrame(r)
		for err == nil {
			seqs, payloads = append(seqs, seq), append(payloads, p)
			if !frameBuffered(r) {
				break
			}
			seq, p, err = readFrame(r)
		}
		if err != nil {
			return err
		}
		last := seqs[len(seqs)-1]
		if err := f.disk.append(last, payloads...); err != nil {
			return err
		}
		for i, p := range payloads {
			cmds, err := fsm.DecodeCommands(p)
			if err != nil {
				return err
			}
			f.store.Apply(seqs[i], cmds)
		}
		binary.BigEndian.PutUint64(ack[:], last)
		if _, err := c.Write(ack[:]); err != nil {
			return err
		}
	}
}

// servePing echoes each 8-byte ping at once.
func servePing(c net.Conn) error {
	var b [8]byte
	for {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return err
		}
		if _, err := c.Write(b[:]); err != nil {
			return err
		}
	}
}
