package murder

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Roles are the roles this murder started.
func (m *Murder) Roles() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.roles)
}

// Env returns the output of `murder-up.sh DIR env` as a map: MASTER_PORT,
// BE1_IMAP_PORT, BE1_LMTP_PORT, BE2_*, FE_IMAP_PORT, FE_LMTP_PORT,
// FE_MUPDATE_PORT (the slave's own listener), *_POP3_PORT, WITH_POP3,
// BE1_NAME, BE2_NAME, FE_NAME, BE_MUPDATE, FE_MUPDATE, MURDER_DIR, CYRUS_BIN.
func (m *Murder) Env() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.env)
}

func (m *Murder) get(key string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.env[key]
}

func local(port string) string { return net.JoinHostPort("127.0.0.1", port) }

// MasterAddr is the real Cyrus mupdate master's "127.0.0.1:port" (listening
// only if the master role runs).
func (m *Murder) MasterAddr() string { return local(m.get("MASTER_PORT")) }

// IMAPAddr is the IMAP listener of be1, be2 or fe.
func (m *Murder) IMAPAddr(role string) string { return local(m.get(envRole(role) + "_IMAP_PORT")) }

// LMTPAddr is the LMTP (TCP) listener of be1, be2 or fe.
func (m *Murder) LMTPAddr(role string) string { return local(m.get(envRole(role) + "_LMTP_PORT")) }

// POP3Addr is the POP3 listener of be1, be2 or fe (Options.WithPOP3).
func (m *Murder) POP3Addr(role string) string { return local(m.get(envRole(role) + "_POP3_PORT")) }

// Name is the Cyrus servername of a role (the server part of MUPDATE
// locations for backends).
func (m *Murder) Name(role string) string {
	if role == RoleMaster {
		for _, kv := range m.base {
			if v, ok := strings.CutPrefix(kv, "MASTER_NAME="); ok {
				return v
			}
		}
		return "mupdate-master"
	}
	return m.get(envRole(role) + "_NAME")
}

// ConfPath is the role's generated imapd.conf (for ctl_* tools' -C).
func (m *Murder) ConfPath(role string) string { return filepath.Join(m.dir, role, "imapd.conf") }

func envRole(role string) string { return strings.ToUpper(role) }

// Stop stops the given roles (all of this murder's roles when none are
// given). The frontend goes first, while its MUPDATE server is still up (a
// slave that cannot reach its server ignores SIGTERM); the others stop in
// parallel, since Cyrus's master takes about 1.5 s to exit each.
func (m *Murder) Stop(ctx context.Context, roles ...string) error {
	if len(roles) == 0 {
		roles = m.Roles()
	}
	var rest []string
	for _, r := range roles {
		if r == RoleFE {
			if err := m.stopOne(ctx, r); err != nil {
				return err
			}
			continue
		}
		rest = append(rest, r)
	}
	errs := make([]error, len(rest))
	var wg sync.WaitGroup
	for i, r := range rest {
		wg.Go(func() { errs[i] = m.stopOne(ctx, r) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (m *Murder) stopOne(ctx context.Context, role string) error {
	out, err := m.run(ctx, []string{"MURDER_ROLES=" + role}, "stop")
	if err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	return nil
}

// StartRole starts one role (again), with env ("KEY=value", for example
// "BE_MUPDATE_PORT=7000") applied on top of the murder's environment for
// this start only. The role's config is regenerated from that environment.
func (m *Murder) StartRole(ctx context.Context, role string, env ...string) error {
	extra := append([]string{"MURDER_ROLES=" + role}, env...)
	out, err := m.run(ctx, extra, "start")
	m.mu.Lock()
	if !slices.Contains(m.roles, role) {
		m.roles = append(m.roles, role)
	}
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	return nil
}

// Restart stops one role and starts it again with env applied as in
// StartRole, for example to point backends at another MUPDATE server:
//
//	m.Restart(ctx, murder.RoleBE1, "BE_MUPDATE_HOST=127.0.0.1", "BE_MUPDATE_PORT=7000")
//	m.Restart(ctx, murder.RoleFE, "FE_MUPDATE_PORT_TARGET=7000")
func (m *Murder) Restart(ctx context.Context, role string, env ...string) error {
	if err := m.Stop(ctx, role); err != nil {
		return err
	}
	return m.StartRole(ctx, role, env...)
}

// Status reports whether every given role (all when none) is up.
func (m *Murder) Status(ctx context.Context, roles ...string) (string, error) {
	if len(roles) == 0 {
		roles = m.Roles()
	}
	return m.run(ctx, []string{"MURDER_ROLES=" + strings.Join(roles, " ")}, "status")
}
