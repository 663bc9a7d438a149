package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/internal/golden"
)

// TestCheckGolden parses one bad policy per kind of error in
// testdata/check and compares the diagnostics with the golden file beside
// it.
func TestCheckGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "check", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("found %d bad policies in testdata/check; want one per error kind", len(files))
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run("fail/"+strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(name, data)
			var out strings.Builder
			var diags []Diagnostic
			var ve *ValidationError
			switch {
			case errors.As(err, &ve):
				diags = ve.Diagnostics
			case err != nil:
				t.Fatalf("Parse: got %T %v; want *ValidationError", err, err)
			default:
				diags = p.Warnings
				if len(diags) == 0 {
					t.Fatalf("Parse accepted %s without warnings; want diagnostics", name)
				}
			}
			for _, d := range diags {
				if d.Pos.Line == 0 {
					t.Errorf("diagnostic without a line: %s", d)
				}
				out.WriteString(d.String() + "\n")
			}
			golden.Check(t, filepath.Join("check", strings.TrimSuffix(name, ".yaml")+".golden"), []byte(out.String()))
		})
	}
}
