package murder_test

import (
	"testing"

	"github.com/rookery/rookery/internal/murder"
)

// A test that points real Cyrus backends and a real frontend at a MUPDATE
// server under test (here a placeholder address) and proves the murder works
// through it.
func ExampleStart() {
	var t *testing.T // the test's *testing.T
	rookeryAddr := "127.0.0.1:3905"

	m := murder.Start(t, murder.Options{
		Roles:           []string{murder.RoleBE1, murder.RoleBE2, murder.RoleFE},
		BackendMupdate:  rookeryAddr,
		FrontendMupdate: rookeryAddr,
	})
	if _, err := m.CheckE2E(t.Context(), rookeryAddr); err != nil {
		t.Fatal(err)
	}
	if _, err := m.CtlMboxlist(t.Context(), murder.RoleBE1, "-m"); err != nil {
		t.Fatal(err)
	}
}
