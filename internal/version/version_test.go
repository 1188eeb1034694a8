package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		name string
		info debug.BuildInfo
		want string
	}{
		{"a release build", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.1"}},
			"rookeryd v0.3.1 (go1.26.8)"},
		{"a development build from git", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "1a2b3c4d5e6f7a8b"}, {Key: "vcs.time", Value: "2026-12-02T07:00:00Z"}, {Key: "vcs.modified", Value: "true"}}},
			"rookeryd (devel) (go1.26.8, revision 1a2b3c4d5e6f, 2026-12-02T07:00:00Z, modified)"},
	} {
		if got := describe("rookeryd", &tc.info); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if s := String("x"); !strings.HasPrefix(s, "x ") || !strings.Contains(s, "go1.") {
		t.Errorf("String from the test binary's own build info: %q", s)
	}
}
