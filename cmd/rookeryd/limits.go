package main

import (
	"errors"
	"time"

	"github.com/rookery/rookery/auth"
	"github.com/rookery/rookery/config"
	"github.com/rookery/rookery/mupdatecompat"
)

// The login-protection settings: TLS before passwords, how long and how
// many unauthenticated connections, and the failed-login back-off.

func setLoginDefaults(c *Config) {
	c.Mupdate.PreAuthTimeout = config.Duration(30 * time.Second)
	c.Mupdate.MaxPreAuthPerSource = 64
	l := auth.DefaultLimits()
	c.Auth.FailedLoginsPerIdentity = l.IdentityFailures
	c.Auth.FailedLoginsPerSource = l.SourceFailures
	c.Auth.MaxLoginBackoff = config.Duration(l.MaxBackoff)
}

func (c *Config) validateLogin() []error {
	var errs []error
	if c.Mupdate.RequireTLS && c.Mupdate.TLSCert == "" {
		errs = append(errs, errors.New("mupdate.require_tls needs mupdate.tls_cert and mupdate.tls_key"))
	}
	if c.Mupdate.PreAuthTimeout < 0 || c.Mupdate.MaxPreAuthPerSource < 0 ||
		c.Auth.FailedLoginsPerIdentity < 0 || c.Auth.FailedLoginsPerSource < 0 || c.Auth.MaxLoginBackoff < 0 {
		errs = append(errs, errors.New("mupdate.pre_auth_timeout, mupdate.max_preauth_per_source and auth.failed_logins_*/max_login_backoff must not be negative"))
	}
	return errs
}

func applyLoginProtection(m MupdateConfig, mc *mupdatecompat.Config) {
	mc.RequireTLSForAuth = m.RequireTLS
	mc.PreAuthTimeout = m.PreAuthTimeout.Std()
	mc.MaxPreAuthPerSource = m.MaxPreAuthPerSource
}

func loginLimits(a AuthConfig) auth.LimitsConfig {
	l := auth.DefaultLimits()
	l.IdentityFailures = a.FailedLoginsPerIdentity
	l.SourceFailures = a.FailedLoginsPerSource
	l.MaxBackoff = a.MaxLoginBackoff.Std()
	return l
}
