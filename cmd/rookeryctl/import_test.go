package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rookery/rookery/api/apitest"
)

// writeDump writes a `ctl_mboxlist -d` style dump of n mailboxes (every
// tenth one only reserved); override changes some records.
func writeDump(t *testing.T, n int, override map[string]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("{\n")
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("user.u%05d", i)
		rec := fmt.Sprintf(`{"name": %q, "mbtype": "e", "partition": "default", "server": "be%d", "acl": {"u%05d": "lrswipkxtecdan", "anyone": "p"}, "name_history": []}`, name, i%2+1, i)
		if i%10 == 0 {
			rec = fmt.Sprintf(`{"name": %q, "mbtype": "erz", "partition": "default", "server": "be%d", "acl": {}}`, name, i%2+1)
		}
		if o, ok := override[name]; ok {
			rec = o
		}
		sep := ",\n"
		if i == n-1 {
			sep = "\n"
		}
		fmt.Fprintf(&b, "%q: %s%s", name, rec, sep)
	}
	b.WriteString("}\n")
	path := filepath.Join(t.TempDir(), "mboxlist.json")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestImportFromDumpRefusesANonEmptyDirectoryAndMergesOnRequest(t *testing.T) {
	bin := buildCtl(t)
	c := apitest.Start(t, apitest.Options{})
	eps := "--endpoints=" + strings.Join(c.Endpoints(), ",")
	run := func(args ...string) result { return ctl(t, bin, append([]string{eps}, args...)...) }

	dump := writeDump(t, 3000, nil)
	run("import", "--from-dump", dump, "--batch", "500").expect(t, "import", exitOK, "imported: 3000 written, 0 unchanged, 0 conflicts")
	run("list", "--location", "be2!").expect(t, "list be2", exitOK, "(1500 entries")
	run("reservations").expect(t, "reservations", exitOK, "(300 reservations")
	run("get", "user.u00001").expect(t, "get", exitOK, "ACTIVE", "be2!default", "u00001=lrswipkxtecdan anyone=p")

	run("import", "--from-dump", dump).expect(t, "import into a non-empty directory", exitFailed, "not empty", "--merge")

	changed := writeDump(t, 3000, map[string]string{
		"user.u00003": `{"mbtype": "e", "partition": "ssd", "server": "be9", "acl": {"x": "lr"}}`,
		"user.u00004": `{"mbtype": "ez", "partition": "default", "server": "be7", "acl": {}}`,
	})
	r := run("import", "--from-dump", changed, "--merge=skip-existing")
	r.expect(t, "skip-existing", exitOK, "conflict: user.u00003: rookery has ACTIVE at be2!default", "source has ACTIVE at be9!ssd", "kept Rookery's",
		"conflict: user.u00004", "imported: 0 written, 2998 unchanged, 2 conflicts (2 kept as they were)")
	run("get", "user.u00003").expect(t, "kept", exitOK, "be2!default")

	r = run("import", "--from-dump", changed, "--merge=overwrite")
	r.expect(t, "overwrite", exitOK, "conflict: user.u00003", "(overwritten)", "imported: 3 written, 2998 unchanged, 2 conflicts (0 kept as they were)")
	run("get", "user.u00003").expect(t, "overwritten", exitOK, "ACTIVE", "be9!ssd", "x=lr")
	run("get", "user.u00004").expect(t, "reserved over active", exitOK, "RESERVED", "be7!default")

	// A snapshot of the cluster, loaded back: everything is already there.
	snap := filepath.Join(t.TempDir(), "dir.snap")
	run("snapshot", "save", snap).expect(t, "snapshot save", exitOK)
	run("import", "--from-snapshot", snap, "--merge=skip-existing").expect(t, "import --from-snapshot", exitOK, "imported: 0 written, 3000 unchanged, 0 conflicts")

	run("import", "--from-dump", "/nonexistent").expect(t, "missing file", exitFailed, "no such file")
	run("import").expect(t, "no source", exitUsage, "exactly one of")
	run("import", "--from-mupdate", "127.0.0.1:1", "--user", "x").expect(t, "no password", exitUsage, "ROOKERY_IMPORT_PASSWORD")
	run("import", "--from-dump", dump, "--merge=sometimes").expect(t, "bad merge", exitUsage, "skip-existing or overwrite")
}
