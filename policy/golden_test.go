package policy

import (
	"os"
	"path/filepath"
	"testing"
)

func mustParse(t testing.TB, name string, data string) *Policy {
	t.Helper()
	p, err := Parse(name, []byte(data))
	if err != nil {
		t.Fatalf("Parse(%s): %v", name, err)
	}
	return p
}

func readPolicy(t testing.TB, path string) *Policy {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return mustParse(t, filepath.Base(path), string(data))
}
