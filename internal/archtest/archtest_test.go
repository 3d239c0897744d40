// Package archtest holds the import rules of DESIGN.md §1 as a test, so a
// change that makes the CLI depend on the server (or the FSM do I/O
// through a server package) fails in CI, as depguard would.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/hyperfunc/hyperfunc"

// allowed lists, per package, which of this module's packages it may
// depend on (directly or not). Anything else of the module is refused.
var allowed = map[string][]string{
	"api":             {},
	"cli":             {"api"},
	"cmd/hyper":       {"api", "cli"},
	"cmd/hf-shim":     {"shim"},
	"shim":            {},
	"executor":        {},
	"internal/record": {}, // the binary record encoding, a leaf
	"cachestore":      {"internal/record"},
	"fsm":             {"cachestore", "internal/record"},
	"discovery":       {},
	"localexec":       {"api", "executor", "shim"},
	"nomadjob":        {"api", "executor", "shim"},
	// The web UI is static files and a login handler over the API; the
	// server mounts it.
	"ui":     {"api"},
	"server": {"api", "executor", "fsm", "cachestore", "internal/record", "ui"},
}

func TestImportRules(t *testing.T) {
	for pkg, ok := range allowed {
		out, err := exec.Command("go", "list", "-deps", mod+"/"+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			rel, ours := strings.CutPrefix(dep, mod+"/")
			if !ours || rel == pkg {
				continue
			}
			permitted := false
			for _, a := range ok {
				if rel == a {
					permitted = true
				}
			}
			if !permitted {
				t.Errorf("%s depends on %s, which DESIGN.md §1 does not allow", pkg, rel)
			}
		}
	}
}
