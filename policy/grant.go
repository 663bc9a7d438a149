package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"
)

// Identity is who asks for access: a GitHub user or a CI workload.
//
// The caller vouches for it: a human Identity must only be built for a user
// who signed in with GitHub and is a member of Policy.GitHub.Org, with the
// teams GitHub reported for them in that organisation; a CI Identity only
// from an OIDC token whose signature, issuer, audience and expiry were
// verified.
type Identity struct {
	// Login is the GitHub login, compared case-insensitively. Empty for CI.
	Login string `json:"login,omitempty"`
	// ID is GitHub's immutable numeric user ID. Policies name logins; the
	// identity layer binds the login to the ID at sign-in, and the ID goes
	// into certificate key IDs.
	ID int64 `json:"id,omitempty"`
	// Teams are the slugs of the user's teams in the organisation.
	Teams []string `json:"teams,omitempty"`
	// CI, when not nil, makes this a CI workload: Login, ID and Teams are
	// then ignored.
	CI *CIClaims `json:"ci,omitempty"`
}

// CIClaims are the verified claims of a GitHub Actions OIDC token that
// roles match on.
type CIClaims struct {
	Repository  string `json:"repository"`            // "owner/name"
	Ref         string `json:"ref"`                   // "refs/heads/main"
	Environment string `json:"environment,omitempty"` // deployment environment, if any
	Workflow    string `json:"workflow,omitempty"`    // workflow name
}

func (c CIClaims) String() string {
	s := fmt.Sprintf("%s ref %s", c.Repository, c.Ref)
	if c.Environment != "" {
		s += " environment " + c.Environment
	}
	if c.Workflow != "" {
		s += fmt.Sprintf(" workflow %q", c.Workflow)
	}
	return s
}

// String describes the identity for people: "user alice (teams infra,
// website)" or "ci example-oss/website ref refs/heads/main".
func (id Identity) String() string {
	if id.CI != nil {
		return "ci " + id.CI.String()
	}
	var s string
	switch {
	case id.Login != "":
		s = "user " + id.Login
	default:
		s = "anyone"
	}
	if len(id.Teams) > 0 {
		s += " (teams " + strings.Join(id.Teams, ", ") + ")"
	}
	return s
}

// ParseRequest splits "principal@host". The principal is everything before
// the last '@'.
func ParseRequest(s string) (principal, host string, err error) {
	i := strings.LastIndexByte(s, '@')
	if i <= 0 || i == len(s)-1 {
		return "", "", fmt.Errorf("%q is not principal@host", s)
	}
	return s[:i], s[i+1:], nil
}

// RoleMatch is a role that applies to an identity, and why.
type RoleMatch struct {
	Role *Role `json:"-"`
	// Name is the role's name.
	Name string `json:"role"`
	// Via says which members entries matched: "team infra", "user bob",
	// "ci example-oss/website ref refs/heads/main".
	Via []string `json:"via"`
	// TTL is the role's effective certificate lifetime.
	TTL time.Duration `json:"-"`

	index int32
}

// Grant is everything one identity may do under a policy: computed once per
// sign-in by Policy.Grant, then asked about each principal@host.
// A Grant is immutable and safe for concurrent use.
type Grant struct {
	policy   *Policy
	identity Identity
	matches  []RoleMatch
	ttl      time.Duration
	// byPrincipal lists, per principal, the matching roles granting it, in
	// policy order. Host membership is then one bit test per role.
	byPrincipal map[string][]int32
}

// Grant evaluates which roles match id and returns the resulting grant.
// It is a pure function of the policy and the identity. An unvalidated
// policy grants nothing.
func (p *Policy) Grant(id Identity) *Grant {
	g := &Grant{policy: p, identity: id, byPrincipal: map[string][]int32{}}
	if p == nil || p.idx == nil {
		return g
	}
	idx := p.idx
	var via map[int32][]string
	add := func(r int32, why string) {
		if via == nil {
			via = map[int32][]string{}
		}
		via[r] = append(via[r], why)
	}
	if id.CI != nil {
		c := id.CI
		for _, r := range idx.byRepo[strings.ToLower(c.Repository)] {
			for _, m := range p.Roles[r].Members.CI {
				if m.matches(c) {
					add(r, "ci "+m.String())
				}
			}
		}
	} else {
		if id.Login != "" {
			for _, r := range idx.byUser[strings.ToLower(id.Login)] {
				add(r, "user "+id.Login)
			}
		}
		for _, t := range id.Teams {
			for _, r := range idx.byTeam[t] {
				add(r, "team "+t)
			}
		}
	}
	if len(via) == 0 {
		return g
	}
	order := make([]int32, 0, len(via))
	for r := range via {
		order = append(order, r)
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	g.matches = make([]RoleMatch, len(order))
	for i, r := range order {
		role := &p.Roles[r]
		ttl := idx.roles[r].ttl
		g.matches[i] = RoleMatch{Role: role, Name: role.Name, Via: via[r], TTL: ttl, index: r}
		if g.ttl == 0 || ttl < g.ttl {
			g.ttl = ttl
		}
		for _, pr := range role.Principals {
			list := g.byPrincipal[pr]
			if n := len(list); n == 0 || list[n-1] != r {
				g.byPrincipal[pr] = append(list, r)
			}
		}
	}
	if g.ttl > p.Defaults.MaxTTL {
		g.ttl = p.Defaults.MaxTTL
	}
	return g
}

func (m CIMatch) matches(c *CIClaims) bool {
	return strings.EqualFold(m.Repository, c.Repository) &&
		(m.Ref == selectAll || Glob(m.Ref, c.Ref)) &&
		(m.Environment == "" || m.Environment == c.Environment) &&
		(m.Workflow == "" || m.Workflow == c.Workflow)
}

// Identity returns the identity the grant was computed for.
func (g *Grant) Identity() Identity { return g.identity }

// Matches lists the roles that apply to the identity, in policy order.
func (g *Grant) Matches() []RoleMatch { return g.matches }

// Empty reports whether the grant allows nothing at all.
func (g *Grant) Empty() bool { return len(g.byPrincipal) == 0 }

// TTL is the certificate lifetime: the shortest lifetime of the matching
// roles, capped by defaults.max_ttl. Zero when no role matches.
func (g *Grant) TTL() time.Duration { return g.ttl }

// Principals lists, sorted, every principal the grant allows on at least
// one host: what a user certificate's ValidPrincipals should hold.
func (g *Grant) Principals() []string {
	out := make([]string, 0, len(g.byPrincipal))
	for p := range g.byPrincipal {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Decision is the answer to one principal@host request.
type Decision struct {
	// Allow is true only when access is granted.
	Allow     bool   `json:"allow"`
	Principal string `json:"principal"`
	Host      string `json:"host"`
	// Address is the host's address to dial; set whenever the host exists.
	Address string `json:"address,omitempty"`
	// Reason explains the outcome in one sentence for logs and users.
	Reason string `json:"reason"`
	// Roles are the matching roles that grant principal on host. They are
	// set also when the pair is denied because those roles conflict.
	Roles []string `json:"roles,omitempty"`

	// The terms of access, meaningful only when Allow is true.

	// Permissions allowed in the session: the intersection over Roles.
	Permissions Permissions `json:"permissions"`
	// ForceCommand, when set, is the only command the session may run.
	ForceCommand string `json:"force_command,omitempty"`
	// SourceAddresses, when not nil, are the only client addresses the
	// session may come from. Nil means any address.
	SourceAddresses []netip.Prefix `json:"source_addresses,omitempty"`
	// RecordInput says keystrokes must be recorded too.
	RecordInput bool `json:"record_input"`
}

// AllowsSource reports whether a client at addr may use the decision:
// false when the decision denies, or when addr is outside SourceAddresses.
func (d *Decision) AllowsSource(addr netip.Addr) bool {
	if !d.Allow {
		return false
	}
	if d.SourceAddresses == nil {
		return true
	}
	addr = addr.Unmap()
	for _, p := range d.SourceAddresses {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// String is "allow root@web1: reason" or "deny root@web1: reason".
func (d Decision) String() string {
	verdict := "deny"
	if d.Allow {
		verdict = "allow"
	}
	return fmt.Sprintf("%s %s@%s: %s", verdict, d.Principal, d.Host, d.Reason)
}

// Allows decides whether the identity may log in as principal on host, and
// on what terms. Everything not granted is denied; see the package
// documentation for how several roles granting the same pair combine.
func (g *Grant) Allows(principal, host string) Decision {
	d := Decision{Principal: principal, Host: host}
	p := g.policy
	if p == nil || p.idx == nil {
		d.Reason = "the policy has not been validated"
		return d
	}
	h, ok := p.idx.hosts[host]
	if !ok {
		d.Reason = fmt.Sprintf("no host named %q in the policy", host)
		return d
	}
	d.Address = p.Hosts[h].Address
	candidates := g.byPrincipal[principal]
	var buf [8]int32
	granting := buf[:0]
	for _, r := range candidates {
		if p.idx.roles[r].hosts.has(h) {
			granting = append(granting, r)
		}
	}
	if len(granting) == 0 {
		d.Reason = g.denyReason(principal, host, candidates)
		return d
	}
	g.combine(&d, granting, h)
	return d
}

func (g *Grant) denyReason(principal, host string, candidates []int32) string {
	switch {
	case len(g.matches) == 0:
		return fmt.Sprintf("no role applies to %s", g.identity)
	case len(candidates) == 0:
		return fmt.Sprintf("no role of %s grants principal %q (roles that apply: %s)", g.identity, principal, g.matchNames())
	}
	var parts []string
	for _, r := range candidates[:min(len(candidates), maxListed)] {
		parts = append(parts, fmt.Sprintf("%s on %s", g.policy.Roles[r].Name, strings.Join(g.policy.Roles[r].Hosts, ", ")))
	}
	return fmt.Sprintf("no role of %s grants %s on host %s (%s is granted by %s%s)", g.identity, principal, host, principal, strings.Join(parts, "; "), more(len(candidates)))
}

// maxListed bounds the roles named in one reason, keeping decisions cheap
// and log lines short for identities in many roles.
const maxListed = 5

func more(n int) string {
	if n > maxListed {
		return fmt.Sprintf(" and %d more", n-maxListed)
	}
	return ""
}

func (g *Grant) matchNames() string {
	var names []string
	for _, m := range g.matches[:min(len(g.matches), maxListed)] {
		names = append(names, m.Name)
	}
	return strings.Join(names, ", ") + more(len(g.matches))
}

func (g *Grant) via(r int32) []string {
	i := sort.Search(len(g.matches), func(i int) bool { return g.matches[i].index >= r })
	if i < len(g.matches) && g.matches[i].index == r {
		return g.matches[i].Via
	}
	return nil
}

// combine fills in d from the roles that grant its pair, choosing the safe
// side wherever they differ. See the package documentation.
func (g *Grant) combine(d *Decision, granting []int32, h int32) {
	p := g.policy
	d.Roles = make([]string, len(granting))
	d.Permissions = AllPermissions
	var forced []string // "role: command" for each role forcing a command
	restricted := false
	for i, r := range granting {
		role := &p.Roles[r]
		d.Roles[i] = role.Name
		d.Permissions &= role.Permissions
		d.RecordInput = d.RecordInput || role.RecordInput
		if role.ForceCommand != "" {
			if d.ForceCommand == "" {
				d.ForceCommand = role.ForceCommand
			}
			forced = append(forced, fmt.Sprintf("%s forces %q", role.Name, role.ForceCommand))
			if role.ForceCommand != d.ForceCommand {
				d.ForceCommand = conflict
			}
		}
		if len(role.SourceAddresses) > 0 {
			if !restricted {
				d.SourceAddresses = append([]netip.Prefix(nil), role.SourceAddresses...)
				restricted = true
			} else {
				d.SourceAddresses = intersectPrefixes(d.SourceAddresses, role.SourceAddresses)
			}
		}
	}
	switch {
	case d.ForceCommand == conflict:
		d.ForceCommand = ""
		d.Reason = fmt.Sprintf("denied: the roles granting this pair force different commands (%s)", strings.Join(forced, "; "))
		return
	case restricted && len(d.SourceAddresses) == 0:
		d.SourceAddresses = nil
		d.Reason = fmt.Sprintf("denied: the roles granting this pair (%s) allow source addresses that do not overlap", strings.Join(d.Roles, ", "))
		return
	}
	d.Allow = true
	r := granting[0]
	reason := fmt.Sprintf("role %s (%s) grants %s on %s", p.Roles[r].Name, strings.Join(g.via(r), ", "), d.Principal, g.selectorFor(r, h))
	if len(granting) > 1 {
		reason += fmt.Sprintf("; combined with %s", strings.Join(d.Roles[1:], ", "))
	}
	d.Reason = reason
}

// conflict marks disagreeing forced commands while combining; it cannot be
// a real command because force_command may not contain control characters.
const conflict = "\x00conflict"

// selectorFor names the selector of role r that selects host h.
func (g *Grant) selectorFor(r int32, h int32) string {
	host := &g.policy.Hosts[h]
	for _, s := range g.policy.idx.roles[r].selectors {
		if s.Matches(host) {
			if s.Kind == "name" {
				return host.Name
			}
			return fmt.Sprintf("%s (hosts %q)", host.Name, s.String())
		}
	}
	return host.Name
}

// intersectPrefixes returns the addresses in both a and b as prefixes: for
// each overlapping pair the more specific prefix, since CIDR prefixes either
// nest or are disjoint.
func intersectPrefixes(a, b []netip.Prefix) []netip.Prefix {
	out := []netip.Prefix{}
	seen := map[netip.Prefix]bool{}
	for _, x := range a {
		for _, y := range b {
			if !x.Overlaps(y) {
				continue
			}
			z := x
			if y.Bits() > x.Bits() {
				z = y
			}
			if !seen[z] {
				seen[z] = true
				out = append(out, z)
			}
		}
	}
	return out
}

// Each calls f with the decision for every principal@host that some
// matching role grants, sorted by principal and then in host order, until f
// returns false. Pairs denied because their roles conflict are included
// with Allow false.
func (g *Grant) Each(f func(Decision) bool) {
	p := g.policy
	if p == nil || p.idx == nil {
		return
	}
	for _, principal := range g.Principals() {
		var union hostSet
		for _, r := range g.byPrincipal[principal] {
			rs := &p.idx.roles[r].hosts
			if rs.all {
				union.all = true
				break
			}
			for w, word := range rs.bits {
				if w >= len(union.bits) {
					union.bits = append(union.bits, make([]uint64, w+1-len(union.bits))...)
				}
				union.bits[w] |= word
			}
		}
		stop := false
		union.each(len(p.Hosts), func(h int32) {
			if stop {
				return
			}
			if !f(g.Allows(principal, p.Hosts[h].Name)) {
				stop = true
			}
		})
		if stop {
			return
		}
	}
}
