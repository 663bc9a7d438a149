package trust

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies guards the rules of the trust package: only
// go-crypto's maintained packages (never the deprecated
// golang.org/x/crypto/openpgp or go-crypto's v1 openpgp API), and no
// core package depending on trust.
func TestDependencies(t *testing.T) {
	deps := func(pkg string) map[string]bool {
		t.Helper()
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		m := map[string]bool{}
		for _, d := range strings.Fields(string(out)) {
			m[d] = true
		}
		return m
	}
	const module = "github.com/sallyport/sallyport/"
	tests := []struct {
		pkg       string
		forbidden []string
	}{
		{module + "trust", []string{"golang.org/x/crypto/openpgp", "github.com/ProtonMail/go-crypto/openpgp", "net/http", module + "web", module + "bastion"}},
		{module + "ca", []string{module + "trust"}},
		{module + "policy", []string{module + "trust"}},
		{module + "store", []string{module + "trust"}},
	}
	for _, tc := range tests {
		t.Run("ok/"+tc.pkg, func(t *testing.T) {
			d := deps(tc.pkg)
			for _, f := range tc.forbidden {
				if d[f] {
					t.Errorf("%s depends on %s", tc.pkg, f)
				}
			}
		})
	}
}
