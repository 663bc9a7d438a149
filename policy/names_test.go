package policy

import (
	"strings"
	"testing"
)

func TestValidatePrincipal(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"ok/root", "root", true},
		{"ok/dotted", "svc.deploy_1-a", true},
		{"ok/max-length", strings.Repeat("a", MaxPrincipalLength), true},
		{"fail/empty", "", false},
		{"fail/too-long", strings.Repeat("a", MaxPrincipalLength+1), false},
		{"fail/star", "*", false},
		{"fail/question", "ro?t", false},
		{"fail/comma", "root,admin", false},
		{"fail/space", "ro ot", false},
		{"fail/tab", "ro\tot", false},
		{"fail/newline", "root\n", false},
		{"fail/at", "root@web1", false},
		{"fail/percent", "%u", false},
		{"fail/dash", "-oProxyCommand=x", false},
		{"fail/dot", ".", false},
		{"fail/dotdot", "..", false},
		{"fail/leading-dot", ".hidden", false},
		{"fail/non-ascii", "rööt", false},
		{"fail/slash", "a/b", false},
		{"fail/quote", `"root"`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidatePrincipal(tc.in)
			if (err == nil) != tc.ok {
				t.Errorf("ValidatePrincipal(%q) = %v; want ok %t", tc.in, err, tc.ok)
			}
		})
	}
}

func TestGlobAndSelectors(t *testing.T) {
	hosts := []Host{{Name: "web1", Labels: []string{"web"}}, {Name: "build1"}, {Name: "db1.eu"}}
	tests := []struct {
		name, sel string
		want      string // matching host names, space separated
	}{
		{"ok/all", "*", "web1 build1 db1.eu"},
		{"ok/exact", "web1", "web1"},
		{"ok/glob-prefix", "build*", "build1"},
		{"ok/glob-question", "web?", "web1"},
		{"ok/glob-dot", "*.eu", "db1.eu"},
		{"ok/label", "label:web", "web1"},
		{"ok/glob-none", "x*", ""},
		{"ok/exact-is-not-prefix", "web", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSelector(tc.sel)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for i := range hosts {
				if s.Matches(&hosts[i]) {
					got = append(got, hosts[i].Name)
				}
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("got %q; want %q", strings.Join(got, " "), tc.want)
			}
			if s.String() != tc.sel {
				t.Errorf("String() = %q; want %q", s.String(), tc.sel)
			}
		})
	}
	for _, bad := range []string{"", "label:", "label:Web", "web[1]", "host:web1", "WEB1", "-web", "a..b"} {
		t.Run("fail/"+bad, func(t *testing.T) {
			if _, err := ParseSelector(bad); err == nil {
				t.Errorf("ParseSelector(%q) accepted", bad)
			}
		})
	}
}
