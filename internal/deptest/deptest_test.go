// Package deptest guards the direction of dependencies: the core packages
// ca and policy must never import the adapters around them.
package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/sallyport/sallyport/"

func TestCoreImportsNoAdapters(t *testing.T) {
	adapters := []string{"web", "bastion", "store", "identity", "trust", "cmd/sallyport"}
	tests := []struct {
		pkg       string
		forbidden []string
	}{
		{"ca", append([]string{"net/http", module + "policy"}, prefixed(adapters)...)},
		{"policy", append([]string{"net/http", module + "ca", module + "audit"}, prefixed(adapters)...)},
	}
	for _, tc := range tests {
		t.Run(tc.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", module+tc.pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list: %v\n%s", err, out)
			}
			deps := map[string]bool{}
			for _, d := range strings.Fields(string(out)) {
				deps[d] = true
			}
			if !deps[module+tc.pkg] {
				t.Fatalf("go list did not list %s itself:\n%s", tc.pkg, out)
			}
			for _, f := range tc.forbidden {
				if deps[f] {
					t.Errorf("%s depends on %s", tc.pkg, f)
				}
			}
		})
	}
}

func prefixed(names []string) []string {
	var out []string
	for _, n := range names {
		out = append(out, module+n)
	}
	return out
}
