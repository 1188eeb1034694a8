package jepsen

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var rookerydFlag = flag.String("rookeryd", "", "rookeryd binary to test (default: build it from this module)")

var build struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// rookerydBinary returns the binary under test, building it once per test
// binary run.
func rookerydBinary(t testing.TB) string {
	t.Helper()
	if *rookerydFlag != "" {
		return *rookerydFlag
	}
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "jepsen-rookeryd-")
		if err != nil {
			build.err = err
			return
		}
		build.path = filepath.Join(dir, "rookeryd")
		// With the clock nemesis's lease clock, which runs at rate 1
		// until a run's clock nemesis changes it.
		cmd := exec.Command("go", "build", "-tags", "clocknemesis", "-o", build.path, "github.com/rookery/rookery/cmd/rookeryd")
		build.out, build.err = cmd.CombinedOutput()
	})
	if build.err != nil {
		t.Fatalf("build rookeryd: %v\n%s", build.err, build.out)
	}
	return build.path
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if *rookerydFlag == "" && build.path != "" {
		os.RemoveAll(filepath.Dir(build.path))
	}
	os.Exit(code)
}
