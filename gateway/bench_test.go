package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/rookery/rookery/internal/imapwire"
	murderpkg "github.com/rookery/rookery/internal/murder"
)

// Benchmarks against the real Cyrus murder: each compares the same work
// straight to a backend ("direct"), through the gateway, and through a
// real Cyrus frontend (imapd/lmtpd in proxy mode, "cyrus-fe"), which is
// what the gateway replaces. Run with
//
//	go test -run '^$' -bench . -benchtime 20x ./gateway/

const (
	benchUser     = "bench"
	benchPass     = "benchpw"
	benchMessages = 8
	benchMsgSize  = 1 << 20
)

var benchSetup struct {
	once sync.Once
	err  error
}

// benchMurder returns the murder with the bench user on be1 holding
// benchMessages messages of about 1 MiB.
func benchMurder(b *testing.B) *testMurder {
	m := murder(b)
	benchSetup.once.Do(func() {
		benchSetup.err = func() error {
			if err := m.AddUser(context.Background(), benchUser, benchPass); err != nil {
				return err
			}
			if err := m.CreateUser(context.Background(), murderpkg.RoleBE1, benchUser); err != nil {
				return err
			}
			c, err := imapclient.DialInsecure(m.BE1.IMAP, nil)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.Login(benchUser, benchPass).Wait(); err != nil {
				return err
			}
			body := bigMessage()
			for i := 0; i < benchMessages; i++ {
				ac := c.Append("INBOX", int64(len(body)), nil)
				ac.Write(body)
				ac.Close()
				if _, err := ac.Wait(); err != nil {
					return err
				}
			}
			if err := c.Logout().Wait(); err != nil {
				return err
			}
			return m.StartRole(context.Background(), murderpkg.RoleFE)
		}()
	})
	if benchSetup.err != nil {
		b.Fatal(benchSetup.err)
	}
	return m
}

func bigMessage() []byte {
	var buf bytes.Buffer
	buf.WriteString("From: bench@example.com\r\nSubject: 1 MiB\r\n\r\n")
	line := strings.Repeat("0123456789abcdef", 4) + "\r\n"
	for buf.Len() < benchMsgSize {
		buf.WriteString(line)
	}
	return buf.Bytes()
}

// rawIMAP is a minimal IMAP client that reads responses without parsing
// them beyond literals, so the client costs the same on both paths.
type rawIMAP struct {
	c net.Conn
	r *bufio.Reader
	n int
}

func dialIMAP(b *testing.B, addr, user, pass string) *rawIMAP {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	ri := &rawIMAP{c: c, r: bufio.NewReaderSize(c, 64<<10)}
	if _, err := ri.r.ReadString('\n'); err != nil {
		b.Fatal(err)
	}
	ri.cmd(b, fmt.Sprintf("LOGIN %s %s", user, pass))
	return ri
}

// cmd sends a command and reads to its tagged OK, returning the bytes read.
func (ri *rawIMAP) cmd(b *testing.B, line string) int64 {
	ri.n++
	tag := fmt.Sprintf("t%d", ri.n)
	if _, err := io.WriteString(ri.c, tag+" "+line+"\r\n"); err != nil {
		b.Fatal(err)
	}
	var total int64
	for {
		l, err := ri.r.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		total += int64(len(l))
		if n, _, ok := imapwire.TrailingLiteral([]byte(strings.TrimRight(l, "\r\n"))); ok {
			k, err := io.CopyN(io.Discard, ri.r, int64(n))
			if err != nil {
				b.Fatal(err)
			}
			total += k
			continue
		}
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				b.Fatalf("%s: %s", line, l)
			}
			return total
		}
	}
}

// relayGateway starts a second gateway in relay mode (imap.mode =
// relay), so the benchmarks show both IMAP modes.
func relayGateway(b *testing.B, m *testMurder) *gw {
	cfg := testConfig(m)
	cfg.IMAP.Mode = IMAPModeRelay
	return startGateway(b, cfg, replicaFromMaster(b, m))
}

// BenchmarkIMAPRelayThroughput fetches 8 x 1 MiB straight from the
// backend, through the gateway (murder mode: go-imap parses and
// re-encodes every response; relay mode: bytes), and through the Cyrus
// frontend, rotating
// the order every round so a busy shared machine is fair to all three,
// and reports each rate and the ratios to direct.
func BenchmarkIMAPRelayThroughput(b *testing.B) {
	m := benchMurder(b)
	g := startGateway(b, testConfig(m), replicaFromMaster(b, m))
	paths := []struct {
		name string
		c    *rawIMAP
		d    time.Duration
	}{
		{name: "direct", c: dialIMAP(b, m.BE1.IMAP, benchUser, benchPass)},
		{name: "gateway", c: dialIMAP(b, g.imap, benchUser, benchPass)},
		{name: "gateway-relay", c: dialIMAP(b, relayGateway(b, m).imap, benchUser, benchPass)},
		{name: "cyrus-fe", c: dialIMAP(b, m.FE.IMAP, benchUser, benchPass)},
	}
	for _, p := range paths {
		p.c.cmd(b, "EXAMINE INBOX")
		p.c.cmd(b, "FETCH 1:* BODY.PEEK[]") // warm Cyrus's caches
	}
	var bytesPer int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range paths {
			p := &paths[(i+k)%len(paths)]
			t0 := time.Now()
			bytesPer = p.c.cmd(b, "FETCH 1:* BODY.PEEK[]")
			p.d += time.Since(t0)
		}
	}
	b.StopTimer()
	mb := float64(bytesPer) * float64(b.N) / (1 << 20)
	direct := mb / paths[0].d.Seconds()
	for _, p := range paths {
		rate := mb / p.d.Seconds()
		b.ReportMetric(rate, p.name+"-MiB/s")
		if p.name != "direct" {
			b.ReportMetric(rate/direct, p.name+"/direct")
		}
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkIMAPLogin measures complete logins (connect, greeting, LOGIN,
// LOGOUT) per second, four at a time, straight to Cyrus, through the
// gateway (its own greeting, a replica lookup, the backend login) and
// through the Cyrus frontend.
func BenchmarkIMAPLogin(b *testing.B) {
	m := benchMurder(b)
	g := startGateway(b, testConfig(m), replicaFromMaster(b, m))
	relay := relayGateway(b, m)
	for _, tc := range []struct{ name, addr string }{{"direct", m.BE1.IMAP}, {"gateway", g.imap}, {"gateway-relay", relay.imap}, {"cyrus-fe", m.FE.IMAP}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetParallelism(2) // 2 x GOMAXPROCS(2) = 4 concurrent logins
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c := dialIMAP(b, tc.addr, benchUser, benchPass)
					c.cmd(b, "LOGOUT")
					c.c.Close()
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "logins/s")
		})
	}
}

// BenchmarkLMTPDelivery delivers a 4 KiB message to one recipient per
// transaction on a persistent connection, straight to the backend's lmtpd,
// through the gateway and through the Cyrus frontend's lmtpd proxy.
func BenchmarkLMTPDelivery(b *testing.B) {
	m := benchMurder(b)
	g := startGateway(b, testConfig(m), replicaFromMaster(b, m))
	body := message("<bench@gw.test>") + strings.Repeat(strings.Repeat("x", 62)+"\r\n", 64)
	for _, tc := range []struct {
		name, addr, auth string
	}{
		{"direct", m.BE1.LMTP, "\x00proxy\x00proxypw"},
		{"gateway", g.lmtp, ""},
		{"cyrus-fe", m.FE.LMTP, "\x00admin\x00adminpw"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tp := lmtpClient(b, tc.addr)
			lmtpCmd(b, tp, 250, "LHLO bench")
			if tc.auth != "" {
				lmtpCmd(b, tp, 235, "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte(tc.auth)))
			}
			start := time.Now()
			for i := 0; i < b.N; i++ {
				deliver(b, tp, benchUser+"@example.com", body)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
		})
	}
}

func deliver(b *testing.B, tp *textproto.Conn, rcpt, body string) {
	lmtpCmd(b, tp, 250, "MAIL FROM:<bench@example.com>")
	lmtpCmd(b, tp, 250, "RCPT TO:<%s>", rcpt)
	lmtpCmd(b, tp, 354, "DATA")
	w := tp.DotWriter()
	io.WriteString(w, body)
	w.Close()
	if _, _, err := tp.ReadResponse(250); err != nil {
		b.Fatal(err)
	}
}
