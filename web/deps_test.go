package web

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoStandInInServer fails if the server side (web, config) could reach
// the GitHub or OIDC stand-ins: only `sallyport dev` may use them.
func TestNoStandInInServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/sallyport/sallyport/web", "github.com/sallyport/sallyport/config").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(pkg, "/internal/githubtest") || strings.Contains(pkg, "/internal/oidctest") || strings.HasPrefix(pkg, "net/http/httptest") {
			t.Errorf("the server imports %s", pkg)
		}
	}
}
