package policy

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that the parser never panics and that anything it
// accepts is a policy check accepts again, evaluates without panicking and
// diffs against itself as unchanged.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/check/*.yaml")
	// testdata/diff/new.yaml is a valid policy pinning host keys.
	seeds = append(seeds, examplePath, "testdata/diff/new.yaml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a policy with an error")
			}
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted policy fails Validate: %v", err)
		}
		for _, r := range p.Roles {
			for _, pr := range r.Principals {
				if err := ValidatePrincipal(pr); err != nil {
					t.Fatalf("accepted invalid principal: %v", err)
				}
			}
			if r.TTL > p.Defaults.MaxTTL {
				t.Fatalf("accepted ttl %s over max %s", r.TTL, p.Defaults.MaxTTL)
			}
		}
		for _, h := range p.Hosts {
			if err := ValidateAddress(h.Address); err != nil {
				t.Fatalf("accepted invalid address: %v", err)
			}
			for i, k := range h.HostKeys {
				back, err := ParseHostKey(k.AuthorizedKey())
				if err != nil || !back.Equal(k) {
					t.Fatalf("accepted host key %q that does not parse again: %v", k.AuthorizedKey(), err)
				}
				for _, prev := range h.HostKeys[:i] {
					if prev.Equal(k) {
						t.Fatalf("accepted host key %s twice for host %s", k, h.Name)
					}
				}
			}
		}
		for i := range p.Tests {
			tc := &p.Tests[i]
			p.RunTest(tc)
			p.Explain(tc.Identity(), append(tc.Allow, tc.Deny...)...)
		}
		for _, r := range p.Roles {
			id := Identity{Login: "x", Teams: r.Members.Teams}
			if len(r.Members.Users) > 0 {
				id.Login = r.Members.Users[0]
			}
			g := p.Grant(id)
			if g.TTL() > p.Defaults.MaxTTL {
				t.Fatalf("grant ttl %s over max %s", g.TTL(), p.Defaults.MaxTTL)
			}
			g.Each(func(d Decision) bool { return true })
		}
		if d := Compare(p, p, nil); !d.Empty() {
			t.Fatalf("policy differs from itself: %+v", d)
		}
	})
}

// FuzzGlob compares Glob with path.Match, which agrees on patterns without
// its extra syntax ('[', '\\') over names without '/'.
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"web*", "web1"}, {"*.eu", "db1.eu"}, {"?b*c*", "abxcyc"}, {"**a", "ba"}, {"*", ""}, {"a*b*c", "abcabc"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		got := Glob(pattern, name)
		if strings.ContainsAny(pattern, "[\\/") || strings.Contains(name, "/") {
			return
		}
		// path.Match's '?' matches one rune, Glob's one byte: compare on
		// ASCII only.
		for _, s := range []string{pattern, name} {
			for i := 0; i < len(s); i++ {
				if s[i] >= 0x80 {
					return
				}
			}
		}
		want, err := path.Match(pattern, name)
		if err != nil {
			return
		}
		if got != want {
			t.Fatalf("Glob(%q, %q) = %t; path.Match = %t", pattern, name, got, want)
		}
	})
}

// FuzzSelector checks that selectors parse without panicking and that a
// selector only ever matches hosts with valid names.
func FuzzSelector(f *testing.F) {
	for _, s := range []string{"*", "web1", "web*", "label:web", "label:", "a?b", "x:y"} {
		f.Add(s, "web1", "web")
	}
	f.Fuzz(func(t *testing.T, sel, host, label string) {
		s, err := ParseSelector(sel)
		if err != nil {
			return
		}
		if back, err := ParseSelector(s.String()); err != nil || back != s {
			t.Fatalf("ParseSelector(%q).String() = %q does not round-trip", sel, s.String())
		}
		h := &Host{Name: host, Labels: []string{label}}
		if s.Matches(h) && s.Kind != "all" && s.Kind != "label" && ValidateHostName(host) != nil {
			t.Fatalf("selector %q matches invalid host name %q", sel, host)
		}
	})
}
