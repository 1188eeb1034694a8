package mupdatecompat

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when they leave goroutines running:
// a goroutine that outlives Close once wrote to a closed store.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
