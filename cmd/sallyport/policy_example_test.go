package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
)

const exampleRepo = "../../examples/policy-repo/"

// TestExamplePolicyRepo runs what the example repository's workflow runs,
// and checks that every flag the workflow passes exists.
func TestExamplePolicyRepo(t *testing.T) {
	ref, err := os.ReadFile("../../policy/testdata/policy-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(exampleRepo + "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ref) {
		t.Errorf("examples/policy-repo/policy.yaml differs from the reference policy")
	}
	runCLI(t, "policy", "check", "--format", "github", exampleRepo+"policy.yaml")
	if out := runCLI(t, "policy", "test", "-v", exampleRepo+"policy.yaml"); !strings.Contains(out, "ok  \t") {
		t.Errorf("policy test:\n%s", out)
	}
	if out := runCLI(t, "policy", "diff", "--members", exampleRepo+"members.yaml", exampleRepo+"policy.yaml", newFile); !strings.Contains(out, "carol (teams infra, website):") {
		t.Errorf("per-person diff:\n%s", out)
	}

	workflow, err := os.ReadFile(exampleRepo + ".github/workflows/policy.yml")
	if err != nil {
		t.Fatal(err)
	}
	// Join continued lines, then check each "sallyport policy SUB" call's
	// flags against SUB's --help.
	text := strings.ReplaceAll(string(workflow), "\\\n", " ")
	calls := regexp.MustCompile(`sallyport policy (\w+)([^\n]*)`).FindAllStringSubmatch(text, -1)
	if len(calls) < 4 {
		t.Fatalf("workflow runs %d sallyport commands; want check, test, diff and comment", len(calls))
	}
	for _, c := range calls {
		help, _, _ := tryCLI(t, "policy", c[1], "--help")
		for _, f := range regexp.MustCompile(`\s(--?[a-z-]+)`).FindAllStringSubmatch(c[2], -1) {
			name := strings.TrimLeft(f[1], "-")
			if !regexp.MustCompile(`\n  -` + regexp.QuoteMeta(name) + `[ \t\n]`).MatchString(help) {
				t.Errorf("workflow passes %s to policy %s, which has no such flag", f[1], c[1])
			}
		}
	}
}
