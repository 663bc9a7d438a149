package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestCIIdentityString(t *testing.T) {
	for _, tc := range []struct {
		name   string
		claims CIClaims
		want   string
	}{
		{"ok/repo-ref", CIClaims{Repository: "example/site", Ref: "refs/heads/main"},
			"github-actions:ref=refs%2Fheads%2Fmain&repository=example%2Fsite"},
		{"ok/all", CIClaims{Repository: "example/site", Ref: "refs/tags/v1.2", Environment: "prod", Workflow: "Deploy & publish"},
			"github-actions:environment=prod&ref=refs%2Ftags%2Fv1.2&repository=example%2Fsite&workflow=Deploy+%26+publish"},
		{"ok/colons-cannot-confuse", CIClaims{Repository: "a/b", Ref: "refs/heads/x", Environment: "c:d"},
			"github-actions:environment=c%3Ad&ref=refs%2Fheads%2Fx&repository=a%2Fb"},
		{"ok/workflow-only", CIClaims{Repository: "a/b", Ref: "refs/pull/7/merge", Workflow: "ci"},
			"github-actions:ref=refs%2Fpull%2F7%2Fmerge&repository=a%2Fb&workflow=ci"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.claims.IdentityString()
			if got != tc.want {
				t.Fatalf("got %q; want %q", got, tc.want)
			}
			back, err := ParseCIIdentity(got)
			if err != nil {
				t.Fatalf("ParseCIIdentity(%q): %v", got, err)
			}
			if back != tc.claims {
				t.Fatalf("round trip: got %+v; want %+v", back, tc.claims)
			}
		})
	}
}

func TestParseCIIdentity(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     CIClaims
	}{
		{"ok/minimal", "github-actions:ref=refs%2Fheads%2Fmain&repository=example%2Fsite",
			CIClaims{Repository: "example/site", Ref: "refs/heads/main"}},
		{"ok/unicode-workflow", "github-actions:ref=refs%2Fheads%2Fmain&repository=example%2Fsite&workflow=D%C3%A9ployer",
			CIClaims{Repository: "example/site", Ref: "refs/heads/main", Workflow: "Déployer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCIIdentity(tc.in)
			if err != nil {
				t.Fatalf("got error %v; want %+v", err, tc.want)
			}
			if got != tc.want {
				t.Fatalf("got %+v; want %+v", got, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, in string }{
		{"fail/empty", ""},
		{"fail/prefix-only", "github-actions:"},
		{"fail/old-form", "github-actions:example/site:refs/heads/main"},
		{"fail/old-form-env", "github-actions:example/site:refs/heads/main:prod"},
		{"fail/user", "github:1234"},
		{"fail/other-prefix", "gitlab-ci:ref=refs%2Fheads%2Fmain&repository=example%2Fsite"},
		{"fail/upper-prefix", "GitHub-Actions:ref=refs%2Fheads%2Fmain&repository=example%2Fsite"},
		{"fail/no-repository", "github-actions:ref=refs%2Fheads%2Fmain"},
		{"fail/no-ref", "github-actions:repository=example%2Fsite"},
		{"fail/unknown-claim", "github-actions:actor=bob&ref=refs%2Fheads%2Fmain&repository=example%2Fsite"},
		{"fail/duplicate-ref", "github-actions:ref=refs%2Fheads%2Fmain&ref=refs%2Fheads%2Fdev&repository=example%2Fsite"},
		{"fail/empty-environment", "github-actions:environment=&ref=refs%2Fheads%2Fmain&repository=example%2Fsite"},
		{"fail/bare-key", "github-actions:environment&ref=refs%2Fheads%2Fmain&repository=example%2Fsite"},
		{"fail/unsorted", "github-actions:repository=example%2Fsite&ref=refs%2Fheads%2Fmain"},
		{"fail/unescaped-slash", "github-actions:ref=refs/heads/main&repository=example/site"},
		{"fail/lower-hex-escape", "github-actions:ref=refs%2fheads%2fmain&repository=example%2fsite"},
		{"fail/space-as-%20", "github-actions:ref=refs%2Fheads%2Fmain&repository=example%2Fsite&workflow=a%20b"},
		{"fail/bad-escape", "github-actions:ref=refs%2Fheads%2Fmain&repository=example%2Gsite"},
		{"fail/semicolon", "github-actions:ref=refs%2Fheads%2Fmain;repository=example%2Fsite"},
		{"fail/trailing-amp", "github-actions:ref=refs%2Fheads%2Fmain&repository=example%2Fsite&"},
		{"fail/repo-no-owner", "github-actions:ref=refs%2Fheads%2Fmain&repository=site"},
		{"fail/repo-deep", "github-actions:ref=refs%2Fheads%2Fmain&repository=a%2Fb%2Fc"},
		{"fail/repo-bad-owner", "github-actions:ref=refs%2Fheads%2Fmain&repository=a_b%2Fc"},
		{"fail/ref-short", "github-actions:ref=main&repository=example%2Fsite"},
		{"fail/ref-bare-refs", "github-actions:ref=refs%2F&repository=example%2Fsite"},
		{"fail/ref-glob", "github-actions:ref=refs%2Fheads%2F%2A&repository=example%2Fsite"},
		{"fail/ref-dotdot", "github-actions:ref=refs%2Fheads%2F..%2Fx&repository=example%2Fsite"},
		{"fail/ref-colon", "github-actions:ref=refs%2Fheads%2Fa%3Ab&repository=example%2Fsite"},
		{"fail/ref-newline", "github-actions:ref=refs%2Fheads%2Fa%0Ab&repository=example%2Fsite"},
		{"fail/env-control", "github-actions:environment=a%1Bb&ref=refs%2Fheads%2Fmain&repository=example%2Fsite"},
		{"fail/workflow-not-utf8", "github-actions:ref=refs%2Fheads%2Fmain&repository=example%2Fsite&workflow=%FF"},
		{"fail/workflow-c1", "github-actions:ref=refs%2Fheads%2Fmain&repository=example%2Fsite&workflow=%C2%85"},
		{"fail/env-too-long", "github-actions:environment=" + strings.Repeat("e", maxCIEnvironmentLen+1) + "&ref=refs%2Fheads%2Fmain&repository=example%2Fsite"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCIIdentity(tc.in)
			if err == nil {
				t.Fatalf("got %+v; want an error", got)
			}
			if !errors.Is(err, ErrCIIdentity) {
				t.Fatalf("got error %v; want one wrapping ErrCIIdentity", err)
			}
			if got != (CIClaims{}) {
				t.Fatalf("got claims %+v with the error; want none", got)
			}
		})
	}
}

func TestCIClaimsValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		claims CIClaims
		ok     bool
	}{
		{"ok/plain", CIClaims{Repository: "example/site", Ref: "refs/heads/main"}, true},
		{"ok/env-spaces", CIClaims{Repository: "example/site.io", Ref: "refs/heads/release/1.x", Environment: "Production EU"}, true},
		{"fail/zero", CIClaims{}, false},
		{"fail/no-ref", CIClaims{Repository: "example/site"}, false},
		{"fail/ref-pattern", CIClaims{Repository: "example/site", Ref: "refs/tags/v?"}, false},
		{"fail/ref-trailing-slash", CIClaims{Repository: "example/site", Ref: "refs/heads/"}, false},
		{"fail/env-newline", CIClaims{Repository: "example/site", Ref: "refs/heads/main", Environment: "a\nb"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.claims.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("got %v; want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrCIIdentity) {
				t.Fatalf("got %v; want it to wrap ErrCIIdentity", err)
			}
		})
	}
}

// FuzzParseCIIdentity checks that the parser never panics, that whatever
// it accepts is valid and is the one canonical string of its claims, and
// that valid claims round-trip through IdentityString.
func FuzzParseCIIdentity(f *testing.F) {
	f.Add("github-actions:ref=refs%2Fheads%2Fmain&repository=example%2Fsite", "", "", "", "")
	f.Add("github-actions:environment=prod&ref=refs%2Ftags%2Fv1&repository=a%2Fb&workflow=Deploy+%26+go", "a/b", "refs/heads/x", "prod", "ci")
	f.Add("github-actions:example/site:refs/heads/main", "example/site", "refs/heads/main", "", "Deploy: prod")
	f.Add("github-actions:ref=%zz", "a/b", "refs/pull/1/merge", "a=b&c", "x;y")
	f.Fuzz(func(t *testing.T, s, repo, ref, env, workflow string) {
		c, err := ParseCIIdentity(s)
		if err != nil {
			if !errors.Is(err, ErrCIIdentity) {
				t.Fatalf("error %v does not wrap ErrCIIdentity", err)
			}
		} else {
			if err := c.Validate(); err != nil {
				t.Fatalf("accepted %q with invalid claims: %v", s, err)
			}
			if got := c.IdentityString(); got != s {
				t.Fatalf("accepted %q, whose canonical form is %q", s, got)
			}
		}
		claims := CIClaims{Repository: repo, Ref: ref, Environment: env, Workflow: workflow}
		if claims.Validate() != nil {
			return
		}
		back, err := ParseCIIdentity(claims.IdentityString())
		if err != nil {
			t.Fatalf("valid claims %+v: %q does not parse: %v", claims, claims.IdentityString(), err)
		}
		if back != claims {
			t.Fatalf("round trip of %+v gave %+v", claims, back)
		}
	})
}
