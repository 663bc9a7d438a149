package policy

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

const hostsYAML = `version: 1
github: {org: example-oss}
defaults: {ttl: 8h, max_ttl: 24h}
hosts:
  - {name: web1, address: "10.0.1.11:22", labels: [web]}
  - {name: web2, address: "10.0.1.12:22", labels: [web]}
  - {name: db1, address: "10.0.2.5:22", labels: [db]}
roles:
`

// twoRoles builds a policy whose roles "a" (team a) and "b" (team b) have
// the given extra keys, for an identity in both teams.
func twoRoles(t *testing.T, a, b string) *Policy {
	t.Helper()
	role := func(name, body string) string {
		return "  - name: " + name + "\n    members: {teams: [" + name + "]}\n" + indent(body)
	}
	return mustParse(t, "combine.yaml", hostsYAML+role("a", a)+role("b", b))
}

func indent(body string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		b.WriteString("    " + strings.TrimSpace(line) + "\n")
	}
	return b.String()
}

var both = Identity{Login: "alice", ID: 1, Teams: []string{"a", "b"}}

func TestCombinationRules(t *testing.T) {
	prefixes := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, x := range s {
			out = append(out, netip.MustParsePrefix(x))
		}
		return out
	}
	tests := []struct {
		name    string
		a, b    string
		request string
		want    Decision // Principal, Host, Address, Reason are not compared
		reason  string   // substring of the reason
	}{
		// Rule 1: pairs are the union of each role's own pairs.
		{name: "ok/pairs/own-pairs-of-a", a: "principals: [root]\nhosts: [web1]\npermissions: [pty]", b: "principals: [deploy]\nhosts: [db1]\npermissions: [pty]",
			request: "root@web1", want: Decision{Allow: true, Roles: []string{"a"}, Permissions: PTY}},
		{name: "ok/pairs/own-pairs-of-b", a: "principals: [root]\nhosts: [web1]", b: "principals: [deploy]\nhosts: [db1]",
			request: "deploy@db1", want: Decision{Allow: true, Roles: []string{"b"}}},
		{name: "fail/pairs/no-cross-product-a-principal-b-host", a: "principals: [root]\nhosts: [web1]", b: "principals: [deploy]\nhosts: [db1]",
			request: "root@db1", want: Decision{}, reason: "no role of user alice (teams a, b) grants root on host db1 (root is granted by a on web1)"},
		{name: "fail/pairs/no-cross-product-b-principal-a-host", a: "principals: [root]\nhosts: [web1]", b: "principals: [deploy]\nhosts: [db1]",
			request: "deploy@web1", want: Decision{}, reason: "grants deploy on host web1"},
		{name: "fail/pairs/unknown-host", a: "principals: [root]\nhosts: [\"*\"]", b: "principals: [root]\nhosts: [\"*\"]",
			request: "root@web9", want: Decision{}, reason: `no host named "web9"`},
		{name: "fail/pairs/unknown-principal", a: "principals: [root]\nhosts: [\"*\"]", b: "principals: [root]\nhosts: [\"*\"]",
			request: "admin@web1", want: Decision{}, reason: `grants principal "admin"`},

		// Rule 3: permissions intersect over the roles granting the pair.
		{name: "ok/permissions/intersection", a: "principals: [root]\nhosts: [web1]\npermissions: [pty, port-forwarding]", b: "principals: [root]\nhosts: [\"label:web\"]\npermissions: [pty, agent-forwarding]",
			request: "root@web1", want: Decision{Allow: true, Roles: []string{"a", "b"}, Permissions: PTY}},
		{name: "ok/permissions/disjoint-gives-none", a: "principals: [root]\nhosts: [web1]\npermissions: [pty]", b: "principals: [root]\nhosts: [web1]\npermissions: [x11-forwarding]",
			request: "root@web1", want: Decision{Allow: true, Roles: []string{"a", "b"}}},
		{name: "ok/permissions/other-pair-keeps-its-own", a: "principals: [root]\nhosts: [web1]\npermissions: [pty, port-forwarding]", b: "principals: [root]\nhosts: [db1]\npermissions: []",
			request: "root@web1", want: Decision{Allow: true, Roles: []string{"a"}, Permissions: PTY | PortForwarding}},
		{name: "ok/permissions/other-principal-keeps-its-own", a: "principals: [root]\nhosts: [web1]\npermissions: [pty, user-rc]", b: "principals: [deploy]\nhosts: [web1]\npermissions: []",
			request: "root@web1", want: Decision{Allow: true, Roles: []string{"a"}, Permissions: PTY | UserRC}},

		// Rule 4: forced commands.
		{name: "ok/force/one-role-forces", a: "principals: [root]\nhosts: [web1]\nforce_command: /bin/backup", b: "principals: [root]\nhosts: [web1]",
			request: "root@web1", want: Decision{Allow: true, Roles: []string{"a", "b"}, ForceCommand: "/bin/backup"}},
		{name: "ok/force/agree", a: "principals: [root]\nhosts: [web1]\nforce_command: /bin/backup", b: "principals: [root]\nhosts: [web1]\nforce_command: /bin/backup",
			request: "root@web1", want: Decision{Allow: true, Roles: []string{"a", "b"}, ForceCommand: "/bin/backup"}},
		{name: "fail/force/disagree", a: "principals: [root]\nhosts: [web1]\nforce_command: /bin/backup", b: "principals: [root]\nhosts: [web1]\nforce_command: /bin/restore",
			request: "root@web1", want: Decision{Roles: []string{"a", "b"}}, reason: `force different commands (a forces "/bin/backup"; b forces "/bin/restore")`},
		{name: "ok/force/disagree-on-other-pairs-only", a: "principals: [root]\nhosts: [web1]\nforce_command: /bin/backup", b: "principals: [root]\nhosts: [db1]\nforce_command: /bin/restore",
			request: "root@db1", want: Decision{Allow: true, Roles: []string{"b"}, ForceCommand: "/bin/restore"}},

		// Rule 5: source addresses intersect; unrestricted roles do not widen.
		{name: "ok/source/unrestricted", a: "principals: [root]\nhosts: [web1]", b: "principals: [root]\nhosts: [web1]",
			request: "root@web1", want: Decision{Allow: true, Roles: []string{"a", "b"}}},
		{name: "ok/source/one-restricts", a: "principals: [root]\nhosts: [web1]\nsource_addresses: [10.0.0.0/8]", b: "principals: [root]\nhosts: [web1]",
			request: "root@web1", want: Decision{Allow: true, Roles: []string{"a", "b"}, SourceAddresses: prefixes("10.0.0.0/8")}},
		{name: "ok/source/nested", a: "principals: [root]\nhosts: [web1]\nsource_addresses: [10.0.0.0/8, 192.0.2.0/24]", b: "principals: [root]\nhosts: [web1]\nsource_addresses: [10.1.0.0/16, 2001:db8::/32]",
			request: "root@web1", want: Decision{Allow: true, Roles: []string{"a", "b"}, SourceAddresses: prefixes("10.1.0.0/16")}},
		{name: "fail/source/disjoint", a: "principals: [root]\nhosts: [web1]\nsource_addresses: [10.0.0.0/8]", b: "principals: [root]\nhosts: [web1]\nsource_addresses: [192.0.2.0/24]",
			request: "root@web1", want: Decision{Roles: []string{"a", "b"}}, reason: "source addresses that do not overlap"},
		{name: "ok/source/other-pair-unaffected", a: "principals: [root]\nhosts: [web1]\nsource_addresses: [10.0.0.0/8]", b: "principals: [root]\nhosts: [db1]",
			request: "root@db1", want: Decision{Allow: true, Roles: []string{"b"}}},

		// Rule 6: input is recorded if any granting role asks.
		{name: "ok/record/any", a: "principals: [root]\nhosts: [web1]\nrecord_input: true", b: "principals: [root]\nhosts: [web1]\nrecord_input: false",
			request: "root@web1", want: Decision{Allow: true, Roles: []string{"a", "b"}, RecordInput: true}},
		{name: "ok/record/only-granting-roles-count", a: "principals: [root]\nhosts: [web1]\nrecord_input: true", b: "principals: [root]\nhosts: [db1]",
			request: "root@db1", want: Decision{Allow: true, Roles: []string{"b"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := twoRoles(t, tc.a, tc.b)
			principal, host, _ := ParseRequest(tc.request)
			got := p.Grant(both).Allows(principal, host)
			if got.Principal != principal || got.Host != host {
				t.Errorf("got pair %s@%s; want %s", got.Principal, got.Host, tc.request)
			}
			if !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("got reason %q; want it to contain %q", got.Reason, tc.reason)
			}
			got.Principal, got.Host, got.Address, got.Reason = "", "", "", ""
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v; want %+v", got, tc.want)
			}
		})
	}
}

// TestCombinedTTL covers rule 2: the shortest lifetime of the matching
// roles, whether or not they grant the requested pair.
func TestCombinedTTL(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		id   Identity
		want time.Duration
	}{
		{"ok/shortest-role-ttl", "principals: [root]\nhosts: [web1]\nttl: 2h", "principals: [root]\nhosts: [db1]\nttl: 12h", both, 2 * time.Hour},
		{"ok/default-is-shorter", "principals: [root]\nhosts: [web1]\nttl: 12h", "principals: [root]\nhosts: [db1]", both, 8 * time.Hour},
		{"ok/one-role-only", "principals: [root]\nhosts: [web1]\nttl: 12h", "principals: [root]\nhosts: [db1]", Identity{Login: "x", Teams: []string{"a"}}, 12 * time.Hour},
		{"ok/role-at-max", "principals: [root]\nhosts: [web1]\nttl: 24h", "principals: [root]\nhosts: [db1]", Identity{Login: "x", Teams: []string{"a"}}, 24 * time.Hour},
		{"fail/no-role-no-ttl", "principals: [root]\nhosts: [web1]", "principals: [root]\nhosts: [db1]", Identity{Login: "x"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := twoRoles(t, tc.a, tc.b)
			if got := p.Grant(tc.id).TTL(); got != tc.want {
				t.Errorf("got ttl %s; want %s", got, tc.want)
			}
		})
	}
}

func TestMembership(t *testing.T) {
	p := mustParse(t, "members.yaml", hostsYAML+`  - name: people
    members: {users: [Octo-Admin], teams: [infra]}
    principals: [root]
    hosts: ["*"]
  - name: deploy
    members:
      ci:
        - {repository: example-oss/website, ref: "refs/tags/v*"}
        - {repository: example-oss/website, ref: refs/heads/main, environment: production, workflow: deploy}
        - {repository: example-oss/docs, ref: "*"}
    principals: [deploy]
    hosts: ["label:web"]
`)
	ci := func(repo, ref, env, wf string) Identity {
		return Identity{CI: &CIClaims{Repository: repo, Ref: ref, Environment: env, Workflow: wf}}
	}
	tests := []struct {
		name    string
		id      Identity
		request string
		allow   bool
	}{
		{"ok/user-case-insensitive", Identity{Login: "octo-admin"}, "root@db1", true},
		{"ok/team", Identity{Login: "someone", Teams: []string{"infra"}}, "root@web2", true},
		{"fail/team-case-matters", Identity{Login: "someone", Teams: []string{"Infra"}}, "root@web2", false},
		{"fail/outsider", Identity{Login: "mallory", Teams: []string{"website"}}, "root@web1", false},
		{"fail/empty-identity", Identity{}, "root@web1", false},
		{"fail/ci-identity-ignores-login", Identity{Login: "octo-admin", CI: &CIClaims{Repository: "example-oss/other", Ref: "refs/heads/main"}}, "root@web1", false},
		{"ok/ci-tag-glob", ci("example-oss/website", "refs/tags/v1.2.3", "", ""), "deploy@web1", true},
		{"fail/ci-branch-not-tag", ci("example-oss/website", "refs/heads/v1", "", ""), "deploy@web1", false},
		{"ok/ci-environment-and-workflow", ci("Example-OSS/Website", "refs/heads/main", "production", "deploy"), "deploy@web2", true},
		{"fail/ci-wrong-environment", ci("example-oss/website", "refs/heads/main", "staging", "deploy"), "deploy@web2", false},
		{"fail/ci-missing-workflow", ci("example-oss/website", "refs/heads/main", "production", ""), "deploy@web2", false},
		{"ok/ci-any-ref", ci("example-oss/docs", "refs/pull/7/merge", "", ""), "deploy@web1", true},
		{"fail/ci-other-repo", ci("example-oss/docs2", "refs/heads/main", "", ""), "deploy@web1", false},
		{"fail/ci-own-pairs-only", ci("example-oss/docs", "refs/heads/main", "", ""), "deploy@db1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			principal, host, _ := ParseRequest(tc.request)
			d := p.Grant(tc.id).Allows(principal, host)
			if d.Allow != tc.allow {
				t.Errorf("%s for %s: got allow %t (%s); want %t", tc.request, tc.id, d.Allow, d.Reason, tc.allow)
			}
		})
	}
}

func TestUnvalidatedPolicyDeniesAll(t *testing.T) {
	p := &Policy{
		Version:  1,
		GitHub:   GitHub{Org: "example-oss"},
		Defaults: Defaults{TTL: time.Hour, MaxTTL: time.Hour},
		Hosts:    []Host{{Name: "web1", Address: "10.0.0.1:22"}},
		Roles:    []Role{{Name: "all", Members: Members{Users: []string{"alice"}}, Principals: []string{"root"}, Hosts: []string{"*"}}},
	}
	if d := p.Grant(Identity{Login: "alice"}).Allows("root", "web1"); d.Allow {
		t.Fatalf("unvalidated policy allowed: %v", d)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if d := p.Grant(Identity{Login: "alice"}).Allows("root", "web1"); !d.Allow {
		t.Fatalf("validated policy denied: %v", d)
	}
	var nilPolicy *Policy
	if d := nilPolicy.Grant(Identity{Login: "alice"}).Allows("root", "web1"); d.Allow {
		t.Fatalf("nil policy allowed: %v", d)
	}
}

func TestAllowsSource(t *testing.T) {
	d := Decision{Allow: true, SourceAddresses: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}
	tests := []struct {
		name string
		d    Decision
		addr string
		want bool
	}{
		{"ok/inside", d, "203.0.113.7", true},
		{"ok/ipv4-mapped", d, "::ffff:203.0.113.7", true},
		{"fail/outside", d, "198.51.100.1", false},
		{"ok/unrestricted", Decision{Allow: true}, "198.51.100.1", true},
		{"fail/denied", Decision{}, "198.51.100.1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.d.AllowsSource(netip.MustParseAddr(tc.addr)); got != tc.want {
				t.Errorf("got %t; want %t", got, tc.want)
			}
		})
	}
}

func TestPrincipalsAndEach(t *testing.T) {
	p := readPolicy(t, examplePath)
	g := p.Grant(Identity{Login: "carol", Teams: []string{"infra", "website"}})
	if got, want := g.Principals(), []string{"deploy", "root"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got principals %v; want %v", got, want)
	}
	var pairs []string
	g.Each(func(d Decision) bool {
		pairs = append(pairs, d.Principal+"@"+d.Host)
		return true
	})
	want := "deploy@web1 deploy@web2 deploy@db1 deploy@build1 root@web1 root@web2 root@db1 root@build1"
	if got := strings.Join(pairs, " "); got != want {
		t.Errorf("got pairs %s; want %s", got, want)
	}
	n := 0
	g.Each(func(Decision) bool { n++; return n < 3 })
	if n != 3 {
		t.Errorf("Each called f %d times after it returned false at 3", n)
	}
}
