package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

type testConfig struct {
	Raft struct {
		Address          string   `toml:"address"`
		HeartbeatTimeout Duration `toml:"heartbeat_timeout"`
		Bootstrap        bool     `toml:"bootstrap"`
	} `toml:"raft"`
	Mupdate struct {
		Admins   []string `toml:"admins"`
		MaxConns int      `toml:"max_conns"`
	} `toml:"mupdate"`
}

func defaults() *testConfig {
	c := &testConfig{}
	c.Raft.Address = "127.0.0.1:1"
	c.Raft.HeartbeatTimeout = Duration(time.Second)
	c.Mupdate.MaxConns = 10
	return c
}

func TestLoadAppliesDefaultsThenFileThenFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want func(*testing.T, *testConfig)
	}{
		{"defaults only", nil, func(t *testing.T, c *testConfig) {
			if c.Raft.Address != "127.0.0.1:1" || c.Mupdate.MaxConns != 10 {
				t.Fatalf("defaults lost: %+v", c)
			}
		}},
		{"file overrides defaults", []string{"-config", "testdata/node.toml"}, func(t *testing.T, c *testConfig) {
			if c.Raft.Address != "127.0.0.1:7001" || c.Raft.HeartbeatTimeout.Std() != 150*time.Millisecond {
				t.Fatalf("file not applied: %+v", c)
			}
			if strings.Join(c.Mupdate.Admins, ",") != "admin,mupdate" || c.Mupdate.MaxConns != 10 {
				t.Fatalf("file not applied: %+v", c)
			}
		}},
		{"flags override file", []string{"-config", "testdata/node.toml", "-raft.address=127.0.0.1:9", "-mupdate.admins", "a,b", "-raft.bootstrap", "-raft.heartbeat_timeout=1m", "-mupdate.max_conns=3"}, func(t *testing.T, c *testConfig) {
			if c.Raft.Address != "127.0.0.1:9" || strings.Join(c.Mupdate.Admins, ",") != "a,b" || !c.Raft.Bootstrap || c.Raft.HeartbeatTimeout.Std() != time.Minute || c.Mupdate.MaxConns != 3 {
				t.Fatalf("flags not applied: %+v", c)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := defaults()
			if err := Load("test", tc.args, c, io.Discard); err != nil {
				t.Fatal(err)
			}
			tc.want(t, c)
		})
	}
}

func TestLoadRejectsBadInputNamingTheProblem(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown key in file", []string{"-config", "testdata/typo.toml"}, "raft.adress"},
		{"missing file", []string{"-config", "testdata/nope.toml"}, "nope.toml"},
		{"bad duration flag", []string{"-raft.heartbeat_timeout=soon"}, "raft.heartbeat_timeout"},
		{"bad int flag", []string{"-mupdate.max_conns=many"}, "mupdate.max_conns"},
		{"unknown flag", []string{"-nope=1"}, "nope"},
		{"stray argument", []string{"extra"}, "extra"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Load("test", tc.args, defaults(), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want mention of %q", err, tc.want)
			}
		})
	}
}
