package mupdatecompat

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rookery/rookery/fsm"
	wire "github.com/rookery/rookery/internal/imapwire"
)

// The golden test replays the client side of every real Cyrus 3.6.1
// transcript in testdata/transcripts against a real server and compares the
// server side.
//
// The transcripts were captured from one murder in one session, so their
// connections are merged into one timeline (by timestamp) and replayed in
// order against one server: each connection then meets the directory state
// the real master had (for example the repairs transcript starts from what
// the create transcript built).
//
// What is compared:
//   - Banner lines: byte for byte. The test config uses the real master's
//     servername and version, so no normalisation is needed.
//   - Every other line of a non-streaming connection: byte for byte, in
//     order, with nothing extra before the close.
//   - Lines of an UPDATE stream after `OK "streaming starts"`: normalised.
//     The real master queues the *names* of changed mailboxes and, every 5 s
//     or at NOOP, sends each name's *current* state once per queued change
//     (duplicates, coalesced intermediate states: two MAILBOX lines for a
//     RESERVE+ACTIVATE, four DELETE lines for tmpbox). Rookery streams each
//     change as applied, once (RESERVE then MAILBOX). Both are valid for
//     RFC 3656 and for the Cyrus slave, which upserts MAILBOX/RESERVE and
//     ignores DELETE of unknown names (mupdate.c cmd_change). So for each
//     `Nx OK "Noop done"` the test folds all stream lines received so far
//     the way the slave does (name → state, location, ACL) and compares the
//     two folded tables; the NOOP reply lines themselves are compared byte
//     for byte, and every stream line must carry the UPDATE tag.
//   - `Q01 OK "bye-bye"`: Cyrus backends often close right after sending
//     LOGOUT, so the relay recorded no reply. Where the transcript has none,
//     the test accepts exactly that reply, or nothing, before the close.
//
// What is skipped: the "#1" lines of frontend-proxied-create.txt are a copy
// of lines of frontend-slave-update-stream.txt (that file says so; they
// have no "connection from" header), so they are not a connection of their
// own.
func TestGoldenTranscripts(t *testing.T) {
	events := loadTranscripts(t, "testdata/transcripts")
	env := newEnv(t, nil)
	rp := &replayer{t: t, env: env, conns: map[string]*replayConn{}}
	for _, ev := range events {
		rp.step(ev)
	}
	for key, c := range rp.conns {
		if !c.closed {
			// The capture ended with this connection open: it must still
			// be served, with nothing left unsent.
			c.c.send("Z99 LOGOUT\r\n")
			for c.streaming {
				cmd := c.c.resp()
				if cmd.Tag == "Z99" {
					break
				}
				fold(t, c.got, cmd, c.updateTag)
			}
			if !c.streaming {
				c.c.expect(`Z99 OK "bye-bye"`)
			}
			c.c.eof()
			if c.streaming {
				// The slave must end up with exactly the directory.
				if want := dumpDirectory(env); !reflect.DeepEqual(c.got, want) {
					t.Errorf("%s: the slave would hold\n  %v\nthe directory holds\n  %v", key, c.got, want)
				}
			}
			continue
		}
		// Only the LOGOUT reply may be missing from the transcript.
		if len(c.rest) > 0 && (len(c.rest) > 1 || c.rest[0] != c.loggedOut+` OK "bye-bye"`) {
			t.Errorf("%s: the server sent %q after the last transcript line", key, c.rest)
		}
	}
	if rp.checked < 100 {
		t.Fatalf("only %d server lines compared; transcripts not parsed?", rp.checked)
	}
	t.Logf("compared %d server lines and %d stream checkpoints across %d connections", rp.checked, rp.checkpoints, len(rp.conns))
}

// tevent is one transcript line.
type tevent struct {
	at    time.Duration // since midnight
	order int           // position across all files, for equal times
	conn  string        // file + "#N"
	dir   byte          // 'C' or 'S'
	text  string        // with \x09 decoded; "<closed>" for a close
	where string        // file:line, for messages
}

var transcriptLine = regexp.MustCompile(`^(\d\d):(\d\d):(\d\d)(\.\d{3})? #(\d+) (C|S): ?(.*)$`)
var transcriptHeader = regexp.MustCompile(`^\d\d:\d\d:\d\d #(\d+) --- `)

func loadTranscripts(t *testing.T, dir string) []tevent {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts in %s: %v", dir, err)
	}
	sort.Strings(files)
	var events []tevent
	order := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Base(f)
		headers := map[string]bool{}
		last := map[string]time.Duration{}
		for i, line := range strings.Split(string(data), "\n") {
			if m := transcriptHeader.FindStringSubmatch(line); m != nil {
				headers[m[1]] = true
				continue
			}
			m := transcriptLine.FindStringSubmatch(line)
			if m == nil {
				continue // comments, marks, blank lines
			}
			if !headers[m[5]] {
				continue // excerpt of a connection from another file
			}
			key := base + "#" + m[5]
			at := parseClock(m[1], m[2], m[3], m[4])
			if m[4] == "" { // close markers carry whole seconds only
				at = max(at, last[key])
			}
			last[key] = at
			order++
			events = append(events, tevent{
				at: at, order: order, conn: key, dir: m[6][0],
				text:  strings.ReplaceAll(m[7], `\x09`, "\t"),
				where: fmt.Sprintf("%s:%d", base, i+1),
			})
		}
	}
	sort.SliceStable(events, func(i, j int) bool {
		if events[i].at != events[j].at {
			return events[i].at < events[j].at
		}
		return events[i].order < events[j].order
	})
	return events
}

func parseClock(h, m, s, ms string) time.Duration {
	var hh, mm, ss, mss int
	fmt.Sscanf(h+" "+m+" "+s, "%d %d %d", &hh, &mm, &ss)
	if ms != "" {
		fmt.Sscanf(ms[1:], "%d", &mss)
	}
	return time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute + time.Duration(ss)*time.Second + time.Duration(mss)*time.Millisecond
}

type replayer struct {
	t           *testing.T
	env         *testEnv
	conns       map[string]*replayConn
	checked     int
	checkpoints int
}

type replayConn struct {
	c         *client
	closed    bool
	loggedOut string   // tag of LOGOUT, once sent
	rest      []string // what the server sent between LOGOUT and its close
	updateTag string   // tag of UPDATE, once sent
	streaming bool
	pending   []string             // transcript stream lines not yet checked
	got, want map[string][3]string // folded stream state
}

func (rp *replayer) step(ev tevent) {
	t := rp.t
	rc := rp.conns[ev.conn]
	if rc == nil {
		nc := rp.env.dial0()
		rc = &replayConn{c: newClient(t, nc), got: map[string][3]string{}, want: map[string][3]string{}}
		rp.conns[ev.conn] = rc
	}
	switch {
	case ev.text == "<closed>":
		if ev.dir == 'C' {
			rp.closeClient(ev, rc)
		}
	case ev.dir == 'C':
		rc.c.send(ev.text + "\r\n")
		if f := strings.Fields(ev.text); len(f) == 2 && strings.EqualFold(f[1], "LOGOUT") {
			rc.loggedOut = f[0]
		}
		if f := strings.Fields(ev.text); len(f) == 2 && strings.EqualFold(f[1], "UPDATE") {
			rc.updateTag = f[0]
		}
	case rc.streaming:
		rc.pending = append(rc.pending, ev.text)
		if strings.HasSuffix(ev.text, `OK "Noop done"`) && !strings.HasPrefix(ev.text, rc.updateTag+" ") {
			rp.checkpoint(ev, rc)
		}
	case rc.closed:
		// The relay saw the client close before this reply went by; it
		// was read when the client closed.
		rp.checked++
		if len(rc.rest) == 0 || rc.rest[0] != ev.text {
			t.Fatalf("%s (%s): after close the server had sent %q, want %q next", ev.where, ev.conn, rc.rest, ev.text)
		}
		rc.rest = rc.rest[1:]
	default:
		got := rc.c.line()
		rp.checked++
		if got != ev.text {
			t.Fatalf("%s (%s): server sent\n  %q\nwant\n  %q", ev.where, ev.conn, got, ev.text)
		}
		switch {
		case rc.updateTag == "":
		case got == rc.updateTag+` OK "streaming starts"`:
			// The dump was equal byte for byte: it is where both the real
			// slave and ours start from.
			rc.streaming = true
			foldText(t, rc.got, rc.pending, rc.updateTag)
			foldText(t, rc.want, rc.pending, rc.updateTag)
			rc.pending = nil
		default:
			rc.pending = append(rc.pending, got)
		}
	}
}

// dial0 connects without reading the banner: the transcript has it.
func (e *testEnv) dial0() net.Conn {
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	return nc
}

// closeClient closes the client side. After LOGOUT it first reads
// everything the server sent up to its own close, which must come.
func (rp *replayer) closeClient(ev tevent, rc *replayConn) {
	defer func() { rc.closed = true; rc.c.nc.Close() }()
	if rc.loggedOut == "" {
		return
	}
	rc.c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	rest, err := io.ReadAll(rc.c.br)
	if err != nil && !isConnReset(err) {
		rp.t.Fatalf("%s: waiting for the server to close after LOGOUT: %v", ev.where, err)
	}
	if len(rest) > 0 {
		rc.rest = strings.Split(strings.TrimSuffix(string(rest), "\r\n"), "\r\n")
	}
}

// checkpoint reads the stream up to the NOOP reply and compares the folded
// states.
func (rp *replayer) checkpoint(ev tevent, rc *replayConn) {
	t := rp.t
	rp.checkpoints++
	noopReply := ev.text
	// Transcript side: fold every pending line but the NOOP reply.
	wantLines := rc.pending[:len(rc.pending)-1]
	rc.pending = nil
	foldText(t, rc.want, wantLines, rc.updateTag)
	// Server side: fold stream lines until the NOOP reply, byte-exact.
	for {
		rc.c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
		line, err := rc.c.br.Peek(len(noopReply) + 2)
		if err == nil && string(line) == noopReply+"\r\n" {
			rc.c.br.Discard(len(line))
			rp.checked++
			break
		}
		cmd := rc.c.resp()
		if cmd.Name == "OK" || cmd.Name == "NO" || cmd.Name == "BAD" || cmd.Name == "BYE" {
			t.Fatalf("%s: got reply %+v, want %q", ev.where, cmd, noopReply)
		}
		fold(t, rc.got, cmd, rc.updateTag)
	}
	if !reflect.DeepEqual(rc.got, rc.want) {
		t.Fatalf("%s: after %q the slave would hold\n  %v\nbut the real master gave it\n  %v", ev.where, noopReply, rc.got, rc.want)
	}
}

// foldText folds transcript lines (literals span lines) into db.
func foldText(t *testing.T, db map[string][3]string, lines []string, tag string) {
	t.Helper()
	if len(lines) == 0 {
		return
	}
	r := wire.NewReader(bufio.NewReader(strings.NewReader(strings.Join(lines, "\r\n")+"\r\n")), wire.Limits{})
	for {
		cmd, err := r.ReadCommand()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("transcript stream unparsable: %v", err)
		}
		fold(t, db, cmd, tag)
	}
}

// fold applies a stream line the way the Cyrus slave's cmd_change does.
func fold(t *testing.T, db map[string][3]string, cmd *wire.Command, tag string) {
	t.Helper()
	if cmd.Tag != tag {
		t.Fatalf("stream line tagged %q, want the UPDATE tag %q: %+v", cmd.Tag, tag, cmd)
	}
	args := make([]string, len(cmd.Args))
	for i, a := range cmd.Args {
		if !a.IsString() {
			t.Fatalf("stream line with an atom argument: %+v", cmd)
		}
		args[i] = a.Value
	}
	switch {
	case cmd.Name == "MAILBOX" && len(args) == 3:
		db[args[0]] = [3]string{"MAILBOX", args[1], args[2]}
	case cmd.Name == "RESERVE" && len(args) == 2:
		db[args[0]] = [3]string{"RESERVE", args[1], ""}
	case cmd.Name == "DELETE" && len(args) == 1:
		delete(db, args[0])
	default:
		t.Fatalf("stream line the Cyrus client would reject: %+v", cmd)
	}
}

// dumpDirectory is the directory as the slave's fold represents it.
func dumpDirectory(env *testEnv) map[string][3]string {
	db := map[string][3]string{}
	env.dir.Store().View().ScanName("", func(e fsm.Entry) bool {
		if e.State == fsm.StateActive {
			db[e.Name] = [3]string{"MAILBOX", e.Location, e.ACL}
		} else {
			db[e.Name] = [3]string{"RESERVE", e.Location, ""}
		}
		return true
	})
	return db
}
