package mupdatecompat

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rookery/rookery/auth"
	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
)

// benchEnv is a server whose users have production-cost bcrypt hashes, so
// that the verification cache is what is measured.
func benchEnv(b *testing.B, store *fsm.Store) *testEnv {
	b.Helper()
	h, err := auth.HashPassword("mupdatepw")
	if err != nil {
		b.Fatal(err)
	}
	users, _ := auth.NewUsers(map[string]string{"mupdate": h})
	acfg := auth.DefaultConfig()
	acfg.Writers = []string{"mupdate"}
	dir := directory.NewLocal(store)
	srv, err := NewServer(testConfig(), directory.NewService(dir, store), auth.New(acfg, users), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &testEnv{t: b, srv: srv, dir: dir, addr: ln.Addr().String()}
}

// rawSession is a minimal client with no test assertions in its hot path.
type rawSession struct {
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(addr string) (*rawSession, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &rawSession{nc: nc, br: bufio.NewReader(nc)}
	for {
		l, err := s.br.ReadString('\n')
		if err != nil {
			nc.Close()
			return nil, err
		}
		if strings.HasPrefix(l, "* OK") {
			return s, nil
		}
	}
}

// cmd sends a command and reads until the line starting with tag.
func (s *rawSession) cmd(tag, text string) (string, error) {
	if _, err := io.WriteString(s.nc, text); err != nil {
		return "", err
	}
	for {
		l, err := s.br.ReadString('\n')
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" MAILBOX") && !strings.HasPrefix(l, tag+" RESERVE") {
				return l, nil
			}
		}
	}
}

var benchIR = plainIR("mupdate", "mupdatepw")

// BenchmarkBackendCreate measures what a Cyrus backend does for every
// CREATE: a new connection, banner, SASL PLAIN login (production bcrypt
// cost, answered from the verification cache), RESERVE, ACTIVATE, LOGOUT
// (docs/mupdate.md §10).
func BenchmarkBackendCreate(b *testing.B) {
	for _, conns := range []int{1, 8} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			env := benchEnv(b, fsm.New(fsm.DefaultConfig()))
			if err := backendCreate(env.addr, "user.warmup"); err != nil { // fills the login cache
				b.Fatal(err)
			}
			var n atomic.Int64
			b.SetParallelism(conns)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					name := "user.b" + strconv.FormatInt(n.Add(1), 10)
					if err := backendCreate(env.addr, name); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "creates/s")
		})
	}
}

func backendCreate(addr, name string) error {
	s, err := dialRaw(addr)
	if err != nil {
		return err
	}
	defer s.nc.Close()
	steps := []struct{ tag, text, want string }{
		{"A01", "A01 AUTHENTICATE \"PLAIN\" " + lit(benchIR) + "\r\n", `A01 OK "Authenticated"`},
		{"X0", "X0 RESERVE " + lit(name, "be1!default") + "\r\n", `X0 OK "done"`},
		{"X1", "X1 ACTIVATE " + lit(name, "be1!default", "alice\tlrswipkxtecdan\t") + "\r\n", `X1 OK "done"`},
	}
	for _, st := range steps {
		l, err := s.cmd(st.tag, st.text)
		if err != nil {
			return err
		}
		if strings.TrimRight(l, "\r\n") != st.want {
			return fmt.Errorf("%s: got %q", st.text, l)
		}
	}
	// Like a Cyrus backend: send LOGOUT and close without waiting, so the
	// client side keeps the TIME_WAIT state, as in production.
	_, err = io.WriteString(s.nc, "Q01 LOGOUT\r\n")
	return err
}

// BenchmarkFind measures FIND on one connection (barrier + lookup).
func BenchmarkFind(b *testing.B) {
	store := fsm.New(fsm.DefaultConfig())
	store.Apply(1, []fsm.Command{{Op: fsm.OpActivate, Name: "user.alice", Location: "be1!default", ACL: "alice\tall\t"}})
	env := benchEnv(b, store)
	s, err := dialRaw(env.addr)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.cmd("A01", "A01 AUTHENTICATE \"PLAIN\" \""+benchIR+"\"\r\n"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if l, err := s.cmd("F1", "F1 FIND \"user.alice\"\r\n"); err != nil || !strings.Contains(l, "Search completed") {
			b.Fatalf("%q %v", l, err)
		}
	}
}

// BenchmarkUpdateDump measures a slave's initial UPDATE dump (what every
// Cyrus slave reconnect costs) of 100k entries.
func BenchmarkUpdateDump(b *testing.B) {
	const n = 100_000
	store := fsm.New(fsm.DefaultConfig())
	cmds := make([]fsm.Command, n)
	for i := range cmds {
		cmds[i] = fsm.Command{Op: fsm.OpActivate, Name: fmt.Sprintf("user.u%06d.Sent", i), Location: "be1!default", ACL: "u\tlrswipkxtecdan\t"}
	}
	store.Apply(1, cmds)
	env := benchEnv(b, store)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		s, err := dialRaw(env.addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.cmd("A01", "A01 AUTHENTICATE \"PLAIN\" \""+benchIR+"\"\r\n"); err != nil {
			b.Fatal(err)
		}
		if l, err := s.cmd("U01", "U01 UPDATE\r\n"); err != nil || !strings.Contains(l, "streaming starts") {
			b.Fatalf("%q %v", l, err)
		}
		s.nc.Close()
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "entries/s")
}

// BenchmarkStreamFanout measures changes delivered to 10 streaming slaves:
// each op is one write; at the end every slave passes a NOOP barrier, so
// all changes have reached all slaves.
func BenchmarkStreamFanout(b *testing.B) {
	const slaves = 10
	env := benchEnv(b, fsm.New(fsm.DefaultConfig()))
	ss := make([]*rawSession, slaves)
	for i := range ss {
		s, err := dialRaw(env.addr)
		if err != nil {
			b.Fatal(err)
		}
		s.cmd("A01", "A01 AUTHENTICATE \"PLAIN\" \""+benchIR+"\"\r\n")
		if l, err := s.cmd("U01", "U01 UPDATE\r\n"); err != nil || !strings.Contains(l, "streaming starts") {
			b.Fatalf("%q %v", l, err)
		}
		ss[i] = s
	}
	barrier := func() {
		for _, s := range ss {
			if l, err := s.cmd("N1", "N1 NOOP\r\n"); err != nil || !strings.Contains(l, "Noop done") {
				b.Fatalf("%q %v", l, err)
			}
		}
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		env.dir.Apply(context.Background(), []fsm.Command{{Op: fsm.OpActivate, Name: "user.s" + strconv.Itoa(i), Location: "be1!default"}})
		// Writers faster than ten slaves can read would outrun the kept
		// history (and the slaves would be told to resync): pace them.
		if i%10_000 == 9_999 {
			barrier()
		}
	}
	barrier()
	b.ReportMetric(float64(b.N*slaves)/time.Since(start).Seconds(), "deliveries/s")
}
