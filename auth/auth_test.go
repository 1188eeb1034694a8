package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// fastHash hashes at the minimum bcrypt cost to keep tests quick.
func fastHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := HashPasswordCost(pw, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func testUsers(t testing.TB) *Users {
	t.Helper()
	u, err := NewUsers(map[string]string{
		"mupdate": fastHash(t, "mupdatepw"),
		"be1":     fastHash(t, "be1pw"),
		"be2":     fastHash(t, "be2pw"),
		"gw":      fastHash(t, "gwpw"),
		"rgw":     fastHash(t, "rgwpw"),
		"bgw":     fastHash(t, "bgwpw"),
		"fe":      fastHash(t, "fepw"),
		"nobody":  fastHash(t, "nobodypw"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Writers = []string{"mupdate", "be1", "be2", "gw", "bgw"}
	cfg.Readers = []string{"fe", "rgw"}
	cfg.Servers = map[string]string{"be1": "be1", "be2": "be2", "bgw": "be1"}
	cfg.Proxies = []string{"gw", "rgw", "bgw"}
	return cfg
}

func TestParseUsersFile(t *testing.T) {
	h := fastHash(t, "pw")
	u, err := ParseUsers(strings.NewReader("# comment\n\nmupdate:" + h + "\n  fe:" + h + "  \n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(u.Names(), ","); got != "fe,mupdate" {
		t.Errorf("names = %s", got)
	}
}

func TestParseUsersRefusesPlaintextAndJunk(t *testing.T) {
	h := fastHash(t, "pw")
	tests := map[string]string{
		"plaintext password": "mupdate:mupdatepw\n",
		"no colon":           "mupdate\n",
		"empty name":         ":" + h + "\n",
		"duplicate":          "a:" + h + "\na:" + h + "\n",
		"space in name":      "a b:" + h + "\n",
		"truncated hash":     "a:" + h[:20] + "\n",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseUsers(strings.NewReader(in))
			if !errors.Is(err, ErrBadUsersFile) {
				t.Fatalf("err = %v, want ErrBadUsersFile", err)
			}
			if strings.Contains(err.Error(), "mupdatepw") {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}

func TestLoadUsersAndFormatUserRoundTrip(t *testing.T) {
	h, err := HashPassword("secret")
	if err != nil {
		t.Fatal(err)
	}
	line, err := FormatUser("mupdate", h)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(line, "secret") {
		t.Fatal("users line holds the plaintext")
	}
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	a := New(Config{Writers: []string{"mupdate"}}, u)
	if _, err := a.Authenticate(context.Background(), "", "mupdate", "secret"); err != nil {
		t.Fatalf("login with the hashed password: %v", err)
	}
	if _, err := FormatUser("bad:name", h); err == nil {
		t.Error("FormatUser accepted a name with ':'")
	}
	if _, err := HashPassword(strings.Repeat("x", 73)); err == nil {
		t.Error("HashPassword silently accepted a password bcrypt would truncate")
	}
}

func TestAuthenticateRoles(t *testing.T) {
	a := New(testConfig(), testUsers(t))
	tests := []struct {
		name, authzid, user, pw string
		want                    Identity
		err                     error
	}{
		{"writer", "", "mupdate", "mupdatepw", Identity{Name: "mupdate", Role: RoleWriter}, nil},
		{"writer bound to a server", "", "be1", "be1pw", Identity{Name: "be1", Role: RoleWriter, Server: "be1"}, nil},
		{"reader", "", "fe", "fepw", Identity{Name: "fe", Role: RoleReader}, nil},
		{"authzid equal to user", "fe", "fe", "fepw", Identity{Name: "fe", Role: RoleReader}, nil},
		{"no role", "", "nobody", "nobodypw", Identity{}, ErrNoRole},
		{"wrong password", "", "mupdate", "wrong", Identity{}, ErrBadCredentials},
		{"unknown user", "", "ghost", "mupdatepw", Identity{}, ErrBadCredentials},
		{"unlisted writer may not proxy", "fe", "mupdate", "mupdatepw", Identity{}, ErrProxyDenied},
		{"bound backend may not become admin", "mupdate", "be1", "be1pw", Identity{}, ErrProxyDenied},
		{"bound backend may not become another backend", "be2", "be1", "be1pw", Identity{}, ErrProxyDenied},
		{"reader may not proxy", "mupdate", "fe", "fepw", Identity{}, ErrProxyDenied},
		{"listed proxy acts as a reader", "fe", "gw", "gwpw", Identity{Name: "fe", Role: RoleReader}, nil},
		{"listed proxy acts as a bound writer", "be1", "gw", "gwpw", Identity{Name: "be1", Role: RoleWriter, Server: "be1"}, nil},
		{"listed reader proxy may not become a writer", "mupdate", "rgw", "rgwpw", Identity{}, ErrProxyDenied},
		{"listed bound proxy may not leave its server", "mupdate", "bgw", "bgwpw", Identity{}, ErrProxyDenied},
		{"listed bound proxy acts for its own server", "be1", "bgw", "bgwpw", Identity{Name: "be1", Role: RoleWriter, Server: "be1"}, nil},
		{"proxy to identity without role", "nobody", "gw", "gwpw", Identity{}, ErrProxyDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.Authenticate(context.Background(), tt.authzid, tt.user, tt.pw)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

// fillHashSlots occupies every bcrypt slot, so that only cache hits can
// succeed; it returns the function that frees them.
func fillHashSlots(a *Authenticator) func() {
	a.sem.mu.Lock()
	n := a.sem.free
	a.sem.free = 0
	a.sem.mu.Unlock()
	return func() {
		for range n {
			a.sem.release()
		}
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestCacheAnswersRepeatedLoginsWithoutBcrypt(t *testing.T) {
	a := New(testConfig(), testUsers(t))
	if _, err := a.Authenticate(context.Background(), "", "mupdate", "mupdatepw"); err != nil {
		t.Fatal(err)
	}
	free := fillHashSlots(a)
	defer free()
	if _, err := a.Authenticate(canceled(), "", "mupdate", "mupdatepw"); err != nil {
		t.Fatalf("cached login needed a bcrypt slot: %v", err)
	}
	if _, err := a.Authenticate(canceled(), "", "mupdate", "other"); err == nil || errors.Is(err, ErrBadCredentials) {
		t.Fatalf("a different password must not hit the cache: %v", err)
	}
}

func TestCacheForgetsChangedPasswords(t *testing.T) {
	a := New(testConfig(), testUsers(t))
	if _, err := a.Authenticate(context.Background(), "", "mupdate", "mupdatepw"); err != nil {
		t.Fatal(err)
	}
	u, _ := NewUsers(map[string]string{"mupdate": fastHash(t, "newpw")})
	a.SetUsers(u)
	if _, err := a.Authenticate(context.Background(), "", "mupdate", "mupdatepw"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old password after change: %v, want ErrBadCredentials", err)
	}
	if _, err := a.Authenticate(context.Background(), "", "mupdate", "newpw"); err != nil {
		t.Fatalf("new password: %v", err)
	}
}

func TestCacheExpiresAndStaysBounded(t *testing.T) {
	cfg := testConfig()
	cfg.CacheSize = 3
	cfg.CacheTTL = time.Minute
	a := New(cfg, testUsers(t))
	now := time.Unix(1000, 0)
	a.cache.now = func() time.Time { return now }
	ctx := context.Background()
	if _, err := a.Authenticate(ctx, "", "mupdate", "mupdatepw"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	free := fillHashSlots(a)
	if _, err := a.Authenticate(canceled(), "", "mupdate", "mupdatepw"); err == nil {
		t.Fatal("expired verification still answered from the cache")
	}
	free()
	h := testUsers(t).hashes["mupdate"]
	for i := 0; i < 50; i++ {
		a.cache.add(a.cache.key("u", strings.Repeat("p", i)), h)
		if n := a.cache.len(); n > cfg.CacheSize {
			t.Fatalf("cache holds %d entries, limit %d", n, cfg.CacheSize)
		}
	}
}

func TestCacheDisabledWithZeroTTL(t *testing.T) {
	cfg := testConfig()
	cfg.CacheTTL = 0
	a := New(cfg, testUsers(t))
	if _, err := a.Authenticate(context.Background(), "", "mupdate", "mupdatepw"); err != nil {
		t.Fatal(err)
	}
	free := fillHashSlots(a)
	defer free()
	if _, err := a.Authenticate(canceled(), "", "mupdate", "mupdatepw"); err == nil {
		t.Fatal("login succeeded without bcrypt while the cache is disabled")
	}
}

// BenchmarkLogin compares a bcrypt verification at the default cost with
// a cached one: the figure that matters for Cyrus backends, which log in
// for every mailbox operation.
func BenchmarkLogin(b *testing.B) {
	h, err := HashPassword("mupdatepw")
	if err != nil {
		b.Fatal(err)
	}
	u, _ := NewUsers(map[string]string{"mupdate": h})
	for _, ttl := range []time.Duration{0, time.Minute} {
		name := "bcrypt-cost10"
		if ttl > 0 {
			name = "cached"
		}
		b.Run(name, func(b *testing.B) {
			a := New(Config{Writers: []string{"mupdate"}, CacheTTL: ttl}, u)
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				if _, err := a.Authenticate(ctx, "", "mupdate", "mupdatepw"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestConcurrentColdLoginsShareOneBcrypt(t *testing.T) {
	a := New(testConfig(), testUsers(t))
	const n = 16
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		go func() {
			<-start
			_, err := a.Authenticate(context.Background(), "", "mupdate", "mupdatepw")
			errs <- err
		}()
	}
	close(start)
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Goroutines that arrive after the first verification finished hit
	// the cache; those that arrive during it wait for it.
	if got := a.hashes.Load(); got != 1 {
		t.Fatalf("%d concurrent logins ran %d bcrypt comparisons, want 1", n, got)
	}
	if _, err := a.Authenticate(context.Background(), "", "mupdate", "bad"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
}
