// Package version reports what a Rookery binary was built from, for
// `--version`: the module version, the Go toolchain and, when the build
// recorded them, the VCS revision and whether the tree was modified.
package version

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// String describes the running binary, e.g.
// "rookeryd v0.3.1 (go1.26.8, revision 1a2b3c4d5e6f, modified)".
func String(program string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return program + " (no build information)"
	}
	return describe(program, info)
}

func describe(program string, info *debug.BuildInfo) string {
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	details := []string{info.GoVersion}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if rev := settings["vcs.revision"]; rev != "" {
		details = append(details, "revision "+rev[:min(12, len(rev))])
	}
	if t := settings["vcs.time"]; t != "" {
		details = append(details, t)
	}
	if settings["vcs.modified"] == "true" {
		details = append(details, "modified")
	}
	return fmt.Sprintf("%s %s (%s)", program, v, strings.Join(details, ", "))
}

// Requested reports whether the command line asks for the version: a
// first argument of --version, -version or version.
func Requested(args []string) bool {
	return len(args) > 0 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version")
}
