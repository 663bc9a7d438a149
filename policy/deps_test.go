package policy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps policy a core package: it must not import the
// adapters or anything that talks to the network.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"net/http",
		"github.com/sallyport/sallyport/web",
		"github.com/sallyport/sallyport/bastion",
		"github.com/sallyport/sallyport/store",
		"github.com/sallyport/sallyport/ca",
		"github.com/sallyport/sallyport/audit",
		"github.com/google/go-github",
		"golang.org/x/crypto/ssh",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("policy depends on %s", dep)
			}
		}
	}
}
