package gateway

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestLoadConfigReadsFileThenFlags(t *testing.T) {
	cfg, err := LoadConfig("test", []string{
		"-config", "testdata/gateway.toml",
		"-gateway.listen.pop3=127.0.0.1:1110",
		"-gateway.limits.auth_failure_delay=1s",
		"-gateway.imap.hide_capabilities=MUPDATE=,XLIST",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.IMAP != "127.0.0.1:1143" || cfg.Listen.POP3 != "127.0.0.1:1110" || cfg.Listen.LMTP != "127.0.0.1:1024" {
		t.Errorf("listen = %+v", cfg.Listen)
	}
	if cfg.Backend.AuthName != "proxy" || cfg.Backend.Auth != AuthPassthrough {
		t.Errorf("backend = %+v", cfg.Backend)
	}
	if got := cfg.Servers["be2"]; got.LMTP != "10.0.0.2:24" || got.IMAP != "10.0.0.2:143" {
		t.Errorf("servers = %+v", cfg.Servers)
	}
	if !cfg.Names.VirtualDomains || cfg.Names.DefaultDomain != "example.org" || !cfg.Names.Lowercase {
		t.Errorf("names = %+v", cfg.Names)
	}
	if cfg.Limits.AuthFailureDelay.Std() != time.Second || cfg.Limits.LoginWindow.Std() != 10*time.Minute {
		t.Errorf("limits = %+v", cfg.Limits)
	}
	if strings.Join(cfg.IMAP.HideCapabilities, ",") != "MUPDATE=,XLIST" {
		t.Errorf("hide = %v", cfg.IMAP.HideCapabilities)
	}
	if cfg.Limits.MaxLine != DefaultConfig().Limits.MaxLine {
		t.Errorf("unset settings must keep their defaults: %+v", cfg.Limits)
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"unknown auth mode", func(c *Config) { c.Backend.Auth = "magic" }, "backend.auth"},
		{"proxy mode without authenticator", func(c *Config) { c.Backend.Auth = AuthProxy; c.Backend.AuthName = "p" }, "authenticator"},
		{"LMTP without proxy identity", func(c *Config) { c.Listen.LMTP = ":24"; c.Backend.AuthName = "" }, "authname"},
		{"bad backend TLS mode", func(c *Config) { c.Backend.TLS = "maybe" }, "backend.tls"},
		{"cert without key", func(c *Config) { c.TLS.CertFile = "x" }, "go together"},
		{"imaps without cert", func(c *Config) { c.Listen.IMAPS = ":993" }, "need tls"},
		{"tiny line limit", func(c *Config) { c.Limits.MaxLine = 10 }, "max_line"},
		{"server without address", func(c *Config) { c.Servers["be9"] = ServerAddrs{} }, "no address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("DefaultConfig does not validate: %v", err)
	}
}

func TestLoadConfigRejectsUnknownKeys(t *testing.T) {
	_, err := LoadConfig("test", []string{"-config", "testdata/typo.toml"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "gateway.listen.imapp") {
		t.Fatalf("err = %v, want it to name the unknown key", err)
	}
}
