package deps

import (
	"bytes"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// clientSide are the packages that run next to Cyrus or on an operator's
// machine; they talk to the cluster only over gRPC or MUPDATE.
var clientSide = []string{
	"github.com/rookery/rookery/client",
	"github.com/rookery/rookery/cmd/rookeryctl",
	"github.com/rookery/rookery/cmd/rookery-gateway",
}

// serverOnly reports whether a package belongs to the server: raft and its
// log stores, bbolt, the cluster package, and api (which links cluster).
func serverOnly(pkg string) bool {
	for _, p := range []string{"github.com/hashicorp/raft", "go.etcd.io/bbolt"} {
		if strings.HasPrefix(pkg, p) {
			return true
		}
	}
	for _, p := range []string{"github.com/rookery/rookery/cluster", "github.com/rookery/rookery/api"} {
		if pkg == p || strings.HasPrefix(pkg, p+"/") {
			return true
		}
	}
	return false
}

func TestClientSideDoesNotLinkTheServer(t *testing.T) {
	for _, root := range clientSide {
		t.Run(root[strings.LastIndex(root, "/")+1:], func(t *testing.T) {
			imports := importGraph(t, root)
			for _, pkg := range slices.Sorted(maps.Keys(imports)) {
				if serverOnly(pkg) {
					t.Errorf("%s depends on %s via %s", root, pkg, strings.Join(importChain(imports, root, pkg), " -> "))
				}
			}
		})
	}
}

// importGraph maps every package root depends on (itself included) to the
// packages it imports, as the build sees them (no tests).
func importGraph(t *testing.T, root string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", root)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", root, err, stderr.String())
	}
	g := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 {
			g[f[0]] = f[1:]
		}
	}
	if _, ok := g[root]; !ok {
		t.Fatalf("go list -deps %s did not list %s itself", root, root)
	}
	return g
}

// importChain is the shortest import path from root to target, so a
// failure says which import to cut.
func importChain(g map[string][]string, root, target string) []string {
	prev := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == target {
			var chain []string
			for ; p != ""; p = prev[p] {
				chain = append([]string{p}, chain...)
			}
			return chain
		}
		for _, q := range g[p] {
			if _, seen := prev[q]; !seen {
				prev[q] = p
				queue = append(queue, q)
			}
		}
	}
	return []string{root, "?", target}
}
