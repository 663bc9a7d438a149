package policy

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

const examplePath = "testdata/policy-example.yaml"

// TestReferenceExample loads the reference policy exactly as written and
// runs its tests. CI checks out only this repository, so the test reads the
// copy in testdata; when the shared original is present it must be equal.
func TestReferenceExample(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if shared, err := os.ReadFile("/work/shared/policy-example.yaml"); err == nil && !bytes.Equal(shared, data) {
		t.Errorf("%s differs from /work/shared/policy-example.yaml; copy it again", examplePath)
	}
	p, err := Parse("policy-example.yaml", data)
	if err != nil {
		t.Fatalf("the reference policy must load as written: %v", err)
	}
	if len(p.Warnings) != 0 {
		t.Errorf("got warnings %v; want none", p.Warnings)
	}
	if got, want := len(p.Tests), 5; got != want {
		t.Fatalf("got %d tests; want %d", got, want)
	}
	for i := range p.Tests {
		res := p.RunTest(&p.Tests[i])
		if !res.Passed() {
			t.Errorf("reference test %q failed: %v", res.Name, res.Failures)
		}
		if res.Checks == 0 {
			t.Errorf("reference test %q checked nothing", res.Name)
		}
	}
	if p.GitHub.Org != "example-oss" || p.Defaults.TTL != 8*time.Hour || p.Defaults.MaxTTL != 24*time.Hour {
		t.Errorf("got org %q ttl %s max %s", p.GitHub.Org, p.Defaults.TTL, p.Defaults.MaxTTL)
	}
	db := p.Roles[3]
	if db.ForceCommand != "/usr/local/bin/db-readonly-shell" || len(db.SourceAddresses) != 1 || db.Permissions != 0 {
		t.Errorf("database-readonly decoded as %+v", db)
	}
}

func TestParseTests(t *testing.T) {
	p := readPolicy(t, examplePath)
	tests := []struct {
		name string
		file string
		want string // substring of the error; empty for success
	}{
		{"ok/beside", "tests:\n  - name: bob\n    user: bob\n    teams: [website]\n    allow: [deploy@web1]\n    ttl: 8h\n", ""},
		{"fail/unknown-host", "tests:\n  - name: bob\n    user: bob\n    allow: [deploy@web7]\n", `beside.yaml:4:13: test "bob": no host named "web7"`},
		{"fail/extra-key", "tests: []\nroles: []\n", `beside.yaml:2:1: tests file: unknown key "roles"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTests("beside.yaml", []byte(tc.file), p)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if res := p.RunTest(&got[0]); !res.Passed() {
					t.Errorf("got failures %v; want none", res.Failures)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v; want *ValidationError containing %q", err, tc.want)
			}
		})
	}
}

func TestRunTestFailures(t *testing.T) {
	p := readPolicy(t, examplePath)
	tc := Test{
		Name:  "wrong expectations",
		User:  "alice",
		Teams: []string{"infra"},
		Allow: []string{"readonly@db1"},
		Deny:  []string{"root@web1"},
		TTL:   8 * time.Hour,
	}
	res := p.RunTest(&tc)
	want := []string{
		`readonly@db1: denied, want allowed: no role of user alice (teams infra) grants principal "readonly" (roles that apply: infrastructure)`,
		`root@web1: allowed, want denied: role infrastructure (team infra) grants root on web1 (hosts "*")`,
		`certificate ttl 4h, want 8h: the shortest of the matching roles: infrastructure 4h; capped by defaults.max_ttl 24h`,
	}
	if strings.Join(res.Failures, "\n") != strings.Join(want, "\n") {
		t.Errorf("got failures\n%s\nwant\n%s", strings.Join(res.Failures, "\n"), strings.Join(want, "\n"))
	}
}
