package mupdatecompat

import (
	"reflect"
	"strings"
	"testing"

	"github.com/rookery/rookery/directory"
	"github.com/rookery/rookery/fsm"
)

var cyrusBanner = []string{
	`* AUTH "PLAIN" "LOGIN"`,
	`* COMPRESS "DEFLATE"`,
	`* PARTIAL-UPDATE`,
	`* OK MUPDATE "mupdate-master" "Cyrus IMAP" "3.6.1-Debian-3.6.1-4+deb12u5" "(master)"`,
}

func TestBannerIsCyrusBanner(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{"default", nil, cyrusBanner},
		{"without compress", func(c *Config) { c.Compress = false }, []string{cyrusBanner[0], cyrusBanner[2], cyrusBanner[3]}},
		{"mechanisms in order", func(c *Config) { c.Mechanisms = []string{"login", "PLAIN"} },
			append([]string{`* AUTH "LOGIN" "PLAIN"`}, cyrusBanner[1:]...)},
		{"own names", func(c *Config) { c.ServerName, c.Implementation, c.Version = "node1", "Rookery", `1.0 "x"` },
			append(append([]string{}, cyrusBanner[:3]...), `* OK MUPDATE "node1" "Rookery" "1.0 \"x\"" "(master)"`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newEnv(t, tt.mutate).dial()
			if !reflect.DeepEqual(c.banner, tt.want) {
				t.Errorf("banner\n%q\nwant\n%q", c.banner, tt.want)
			}
		})
	}
}

func TestConfigRejectsLineBreaksInBanner(t *testing.T) {
	cfg := testConfig()
	cfg.ServerName = "evil\r\n* OK"
	if _, err := NewServer(cfg, directory.NewLocalService(fsm.New(fsm.Config{})), testAuthenticator(t), nil); err == nil {
		t.Fatal("NewServer accepted a servername with CRLF")
	}
	cfg = testConfig()
	cfg.Mechanisms = []string{"GSSAPI"}
	if _, err := NewServer(cfg, directory.NewLocalService(fsm.New(fsm.Config{})), testAuthenticator(t), nil); err == nil {
		t.Fatal("NewServer accepted a mechanism it cannot run")
	}
}

type state int

const (
	preAuth state = iota
	authed
	streaming
)

// TestReplyTextsAndStateRestrictions checks every error text of
// docs/mupdate.md §3 and §5-§7 in the state where it applies.
func TestReplyTextsAndStateRestrictions(t *testing.T) {
	hosts31 := strings.Repeat(` "h"`, 31)
	tests := []struct {
		state state
		send  string
		want  string
	}{
		{preAuth, "\r\n", `* BAD "Need command"`},
		{preAuth, "   \r\n", `* BAD "Need command"`},
		{preAuth, "A1\r\n", `A1 BAD "Null command"`},
		{preAuth, "A1 FROB\r\n", `A1 BAD "Unrecognized command"`},
		{preAuth, "* NOOP\r\n", `* BAD "Invalid tag"`},
		{preAuth, "A1 STARTTLS\r\n", `A1 BAD "Unrecognized command"`}, // no TLS configured
		{preAuth, "A1 NOOP\r\n", `A1 BAD "Please login first"`},
		{preAuth, "A1 FIND \"x\"\r\n", `A1 BAD "Please login first"`},
		{preAuth, "A1 LIST\r\n", `A1 BAD "Please login first"`},
		{preAuth, "A1 UPDATE\r\n", `A1 BAD "Please login first"`},
		{preAuth, "A1 RESERVE \"x\" \"y\"\r\n", `A1 BAD "Please login first"`},
		{preAuth, "A1 ACTIVATE \"x\" \"y\" \"z\"\r\n", `A1 BAD "Please login first"`},
		{preAuth, "A1 DEACTIVATE \"x\" \"y\"\r\n", `A1 BAD "Please login first"`},
		{preAuth, "A1 DELETE \"x\"\r\n", `A1 BAD "Please login first"`},
		{preAuth, "A1 COMPRESS \"DEFLATE\"\r\n", `A1 BAD "Please login first"`},
		{preAuth, "A1 AUTHENTICATE\r\n", `A1 BAD "Missing arguments"`},
		{preAuth, "A1 AUTHENTICATE \"PLAIN\" \"AA==\" \"x\"\r\n", `A1 BAD "Extra arguments"`},
		{preAuth, "A1 AUTHENTICATE \"GSSAPI\"\r\n", `A1 NO "no mechanism available"`},
		{preAuth, "A1 AUTHENTICATE \"PLAIN\" \"!!\"\r\n", `A1 NO "bad protocol / cancel"`},
		{preAuth, "a1 logout\r\n", `a1 OK "bye-bye"`},

		{authed, "A1 AUTHENTICATE \"PLAIN\" \"AA==\"\r\n", `A1 BAD "already authenticated"`},
		{authed, "A1 RESERVE \"x\"\r\n", `A1 BAD "Missing arguments"`},
		{authed, "A1 RESERVE \"x\" \"be1!p\" \"z\"\r\n", `A1 BAD "Extra arguments"`},
		{authed, "A1 ACTIVATE \"x\" \"be1!p\"\r\n", `A1 BAD "Missing arguments"`},
		{authed, "A1 DEACTIVATE \"x\"\r\n", `A1 BAD "Missing arguments"`},
		{authed, "A1 DELETE\r\n", `A1 BAD "Missing arguments"`},
		{authed, "A1 FIND\r\n", `A1 BAD "Missing arguments"`},
		{authed, "A1 FIND \"a\" \"b\"\r\n", `A1 BAD "Extra arguments"`},
		{authed, "A1 LIST \"a\" \"b\"\r\n", `A1 BAD "Extra arguments"`},
		{authed, "A1 NOOP \"a\"\r\n", `A1 BAD "Extra arguments"`},
		{authed, "A1 LOGOUT \"a\"\r\n", `A1 BAD "Extra arguments"`},
		{authed, "A1 UPDATE \"\"\r\n", `A1 BAD "Badly formed arguments"`},
		{authed, "A1 UPDATE \"be1\" \"\"\r\n", `A1 BAD "Badly formed arguments"`},
		{authed, "A1 UPDATE" + hosts31 + "\r\n", `A1 BAD "Extra arguments"`},
		{authed, "A1 DELETE \"nosuch\"\r\n", `A1 NO "mailbox doesn't exist"`},
		{authed, "A1 DEACTIVATE \"nosuch\" \"be1!p\"\r\n", `A1 NO "mailbox doesn't exist"`},
		{authed, "A1 RESERVE \"\" \"be1!p\"\r\n", `A1 NO "invalid command"`},
		{authed, "A1 FIND \"nosuch\"\r\n", `A1 OK "Search completed"`},
		{authed, "A1 LIST \"nosuch!\"\r\n", `A1 OK "list complete"`},
		{authed, "A1 COMPRESS \"LZ4\"\r\n", `A1 NO "Unknown COMPRESS algorithm: LZ4"`},
		{authed, "A1 NOOP\r\n", `A1 OK "Noop done"`},
		{authed, "A1 FIND \"x\r\n", `A1 BAD "Invalid quoted string"`},
		{authed, "A1 FIND (x)\r\n", `A1 BAD "Invalid characters in command"`},
		{authed, "A1 LOGOUT\r\n", `A1 OK "bye-bye"`},

		{streaming, "A1 FIND \"x\"\r\n", `A1 BAD "not legal when streaming"`},
		{streaming, "A1 LIST\r\n", `A1 BAD "not legal when streaming"`},
		{streaming, "A1 UPDATE\r\n", `A1 BAD "not legal when streaming"`},
		{streaming, "A1 RESERVE \"x\" \"y\"\r\n", `A1 BAD "not legal when streaming"`},
		{streaming, "A1 ACTIVATE \"x\" \"y\" \"z\"\r\n", `A1 BAD "not legal when streaming"`},
		{streaming, "A1 DEACTIVATE \"x\" \"y\"\r\n", `A1 BAD "not legal when streaming"`},
		{streaming, "A1 DELETE \"x\"\r\n", `A1 BAD "not legal when streaming"`},
		{streaming, "A1 AUTHENTICATE \"PLAIN\"\r\n", `A1 BAD "not legal when streaming"`},
		{streaming, "A1 COMPRESS \"DEFLATE\"\r\n", `A1 BAD "not legal when streaming"`},
		{streaming, "\r\n", `* BAD "Need command"`},
		{streaming, "A1\r\n", `A1 BAD "Null command"`},
		{streaming, "A1 FROB\r\n", `A1 BAD "Unrecognized command"`},
		{streaming, "A1 FIND \"x\r\n", `A1 BAD "Invalid quoted string"`},
		{streaming, "N1 NOOP\r\n", `N1 OK "Noop done"`},
		{streaming, "Q1 LOGOUT\r\n", `Q1 OK "bye-bye"`},
	}
	env := newEnv(t, nil)
	for _, tt := range tests {
		name := []string{"preauth", "authed", "streaming"}[tt.state] + "/" + strings.TrimSpace(tt.send)
		t.Run(name, func(t *testing.T) {
			c := env.dial()
			c.t = t
			if tt.state >= authed {
				c.login("mupdate")
			}
			if tt.state == streaming {
				c.send("U01 UPDATE\r\n")
				c.expect(`U01 OK "streaming starts"`)
			}
			c.send(tt.send)
			c.expect(tt.want)
			if strings.Contains(tt.want, "bye-bye") {
				c.eof()
				return
			}
			// The session goes on after every one of these replies.
			c.send("Z1 LOGOUT\r\n")
			c.expect(`Z1 OK "bye-bye"`)
			c.eof()
		})
	}
}

// TestWriteSemanticsLikeCyrusMaster runs the command sequences of
// docs/mupdate.md §5 on one connection, with the argument forms Cyrus
// and other clients use.
func TestWriteSemanticsLikeCyrusMaster(t *testing.T) {
	c := newEnv(t, nil).dial()
	c.login("mupdate")
	steps := []struct{ send, want string }{
		{"X0 RESERVE " + lit("user.x", "be1!default") + "\r\n", `X0 OK "done"`},
		{"X1 RESERVE \"user.x\" \"be2!default\"\r\n", `X1 NO "mailbox already exists"`},
		{"X2 RESERVE user.x be1!default\r\n", `X2 OK "done"`}, // same location: accepted (atoms too)
		{"X3 DEACTIVATE \"user.x\" \"be1!default\"\r\n", `X3 NO "mailbox not currently active"`},
		{"X4 ACTIVATE " + lit("user.x", "be1!default", "x\tlrs\t") + "\r\n", `X4 OK "done"`},
		{"F1 FIND \"user.x\"\r\n", "F1 MAILBOX {6+}"},
		{"", "user.x {11+}"},
		{"", "be1!default {6+}"},
		{"", "x\tlrs\t"},
		{"", `F1 OK "Search completed"`},
		{"X5 RESERVE \"user.x\" \"be1!default\"\r\n", `X5 OK "done"`}, // resets to reserved
		{"F2 FIND \"user.x\"\r\n", "F2 RESERVE {6+}"},
		{"", "user.x {11+}"},
		{"", "be1!default"},
		{"", `F2 OK "Search completed"`},
		{"X6 ACTIVATE \"user.x\" \"be1!default\" \"\"\r\n", `X6 OK "done"`},
		{"X7 DEACTIVATE \"user.x\" \"be2!other\"\r\n", `X7 OK "done"`}, // XFER: back to RESERVE at the given location
		{"F3 FIND {6}\r\n", "+ go ahead"},
		{"user.x\r\n", "F3 RESERVE {6+}"},
		{"", "user.x {9+}"},
		{"", "be2!other"},
		{"", `F3 OK "Search completed"`},
		{"X8 DELETE \"user.x\"\r\n", `X8 OK "done"`},
		{"X9 DELETE \"user.x\"\r\n", `X9 NO "mailbox doesn't exist"`},
		{"F4 FIND \"user.x\"\r\n", `F4 OK "Search completed"`},
		{"X10 ACTIVATE \"a!b!c\" \"srv!\" \"\"\r\n", `X10 OK "done"`}, // stored verbatim
		{"L1 LIST \"srv!\"\r\n", "L1 MAILBOX {5+}"},
		{"", "a!b!c {4+}"},
		{"", "srv! {0+}"},
		{"", ""},
		{"", `L1 OK "list complete"`},
	}
	for _, s := range steps {
		if s.send != "" {
			c.send(s.send)
		}
		c.expect(s.want)
	}
}

func TestListMatchesLocationPrefixBytewise(t *testing.T) {
	env := newEnv(t, nil)
	env.apply(
		fsm.Command{Op: fsm.OpActivate, Name: "a", Location: "be1!default"},
		fsm.Command{Op: fsm.OpActivate, Name: "b", Location: "be10!default"},
		fsm.Command{Op: fsm.OpReserve, Name: "c", Location: "be1!p2"},
		fsm.Command{Op: fsm.OpActivate, Name: "d", Location: "be2!default"},
	)
	c := env.dial()
	c.login("mupdate")
	for _, tt := range []struct {
		prefix string
		want   []string
	}{
		{"be1!", []string{"a", "c"}},
		{"be1", []string{"a", "b", "c"}},
		{"be1!p", []string{"c"}},
		{"", []string{"a", "b", "c", "d"}},
		{"BE1!", nil}, // case matters, as in strncmp
	} {
		c.send("L1 LIST \"" + tt.prefix + "\"\r\n")
		var got []string
		for {
			r := c.resp()
			if r.Name == "OK" {
				break
			}
			got = append(got, r.Args[0].Value)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("LIST %q = %v, want %v", tt.prefix, got, tt.want)
		}
	}
}

func TestRolesLimitWhatIdentitiesMayDo(t *testing.T) {
	env := newEnv(t, nil)
	env.apply(fsm.Command{Op: fsm.OpActivate, Name: "on-be2", Location: "be2!default"})
	env.apply(fsm.Command{Op: fsm.OpActivate, Name: "moving", Location: "be2!default"})
	env.apply(fsm.Command{Op: fsm.OpDeactivate, Name: "moving", Location: "be2!default"})

	reader := env.dial()
	reader.login("fe")
	for _, cmd := range []string{
		`R1 RESERVE "x" "be1!default"`,
		`R2 ACTIVATE "x" "be1!default" ""`,
		`R3 DEACTIVATE "on-be2" "be2!default"`,
		`R4 DELETE "on-be2"`,
	} {
		reader.send(cmd + "\r\n")
		reader.expect(cmd[:2] + ` NO "permission denied"`)
	}
	reader.send("F1 FIND \"on-be2\"\r\n")
	if r := reader.resp(); r.Name != "MAILBOX" {
		t.Fatalf("reader FIND: %+v", r)
	}
	reader.expect(`F1 OK "Search completed"`)

	nobody := env.dial()
	nobody.send("A01 AUTHENTICATE \"PLAIN\" \"" + plainIR("nobody", "nobodypw") + "\"\r\n")
	nobody.expect(`A01 NO "only admins may authenticate"`)
	nobody.send("F1 FIND \"x\"\r\n")
	nobody.expect(`F1 BAD "Please login first"`)

	// be1 is a writer bound to servername be1.
	be1 := env.dial()
	be1.login("be1")
	for _, s := range []struct{ send, want string }{
		{`B1 RESERVE "mine" "be1!default"`, `B1 OK "done"`},
		{`B2 ACTIVATE "mine" "be1!default" ""`, `B2 OK "done"`},
		{`B3 RESERVE "theirs" "be2!default"`, `B3 NO "permission denied"`},
		{`B4 ACTIVATE "on-be2" "be1!default" ""`, `B4 NO "permission denied"`}, // hijack of an ACTIVE be2 mailbox
		{`B4a DEACTIVATE "on-be2" "be1!default"`, `B4a NO "permission denied"`},
		{`B4b ACTIVATE "moving" "be1!default" ""`, `B4b OK "done"`}, // XFER destination activates
		{`B5 ACTIVATE "x" "be10!default" ""`, `B5 NO "permission denied"`},
		{`B6 DELETE "mine"`, `B6 OK "done"`},
		{`B7 DELETE "nosuch"`, `B7 NO "mailbox doesn't exist"`},
	} {
		be1.send(s.send + "\r\n")
		be1.expect(s.want)
	}
	env.apply(fsm.Command{Op: fsm.OpActivate, Name: "other", Location: "be2!default"})
	be1.send("B8 DELETE \"other\"\r\n")
	be1.expect(`B8 NO "permission denied"`)

	logs := env.logs.String()
	for _, want := range []string{"read-only identity", "entry on another server", "only admins may authenticate"} {
		if !strings.Contains(logs, want) {
			t.Errorf("refusal %q not logged", want)
		}
	}
}
