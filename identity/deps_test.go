package identity

import (
	"os/exec"
	"strings"
	"testing"
)

// identity is used by web and bastion; it must not import them (or any
// other adapter), nor the GitHub stand-ins outside tests.
func TestNoAdapterImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/sallyport/sallyport/identity").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const m = "github.com/sallyport/sallyport/"
	forbidden := []string{m + "web", m + "bastion", m + "store", m + "trust", m + "ca", m + "cmd/sallyport",
		m + "internal/githubtest", m + "internal/oidctest", "testing"}
	deps := map[string]bool{}
	for _, d := range strings.Fields(string(out)) {
		deps[d] = true
	}
	for _, f := range forbidden {
		if deps[f] {
			t.Errorf("identity depends on %s", f)
		}
	}
}
