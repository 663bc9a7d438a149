package policy

import (
	"fmt"
	"math/bits"
	"sort"
	"strings"
	"time"
)

// Validate checks the policy and prepares it for evaluation. It returns a
// *ValidationError listing every error; warnings are stored in p.Warnings
// (and also listed in the error when there is one). A policy built in code
// must pass Validate before it grants anything.
func (p *Policy) Validate() error {
	v := &validator{p: p}
	p.idx = nil
	p.Warnings = nil
	v.check()
	diags := sortDiagnostics(v.diags)
	for _, d := range diags {
		if d.Severity == SeverityError {
			return &ValidationError{Diagnostics: diags}
		}
	}
	p.Warnings = diags
	p.idx = v.idx
	return nil
}

type validator struct {
	p     *Policy
	diags []Diagnostic
	idx   *index
}

// at returns the recorded position of path, or of its closest recorded
// parent ("roles[3].hosts[1]", then "roles[3].hosts", then "roles[3]").
func (p *Policy) at(path string) Pos {
	for {
		if pos, ok := p.pos[path]; ok {
			return pos
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	if pos, ok := p.pos[""]; ok {
		return pos
	}
	return Pos{File: p.File}
}

func (v *validator) errorf(path, format string, args ...any) {
	v.diags = append(v.diags, Diagnostic{Pos: v.p.at(path), Severity: SeverityError, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) warnf(path, format string, args ...any) {
	v.diags = append(v.diags, Diagnostic{Pos: v.p.at(path), Severity: SeverityWarning, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) check() {
	p := v.p
	if p.Version != Version {
		v.errorf("version", "unsupported version %d; this Sallyport reads version %d", p.Version, Version)
	}
	if err := validateLogin(p.GitHub.Org); err != nil {
		v.errorf("github.org", "github.org: %v", err)
	}
	v.checkDefaults()
	idx := &index{
		hosts:  make(map[string]int32, len(p.Hosts)),
		byTeam: map[string][]int32{},
		byUser: map[string][]int32{},
		byRepo: map[string][]int32{},
	}
	labels := map[string][]int32{}
	for i, h := range p.Hosts {
		path := fmt.Sprintf("hosts[%d]", i)
		if err := ValidateHostName(h.Name); err != nil {
			v.errorf(path+".name", "%v", err)
		} else if j, dup := idx.hosts[h.Name]; dup {
			v.errorf(path+".name", "duplicate host %q (first defined at %s)", h.Name, p.at(fmt.Sprintf("hosts[%d]", j)))
		} else {
			idx.hosts[h.Name] = int32(i)
		}
		if err := ValidateAddress(h.Address); err != nil {
			v.errorf(path+".address", "host %q: %v", h.Name, err)
		}
		v.checkHostKeys(h, path)
		for j, l := range h.Labels {
			if err := ValidateHostLabel(l); err != nil {
				v.errorf(fmt.Sprintf("%s.labels[%d]", path, j), "host %q: %v", h.Name, err)
				continue
			}
			if n := len(labels[l]); n == 0 || labels[l][n-1] != int32(i) {
				labels[l] = append(labels[l], int32(i))
			}
		}
	}
	if len(p.Hosts) == 0 {
		v.warnf("hosts", "the policy lists no hosts, so it grants nothing")
	}
	roleAt := map[string]int{}
	idx.roles = make([]compiledRole, len(p.Roles))
	for i := range p.Roles {
		r := &p.Roles[i]
		path := fmt.Sprintf("roles[%d]", i)
		if err := validateRoleName(r.Name); err != nil {
			v.errorf(path+".name", "%v", err)
		} else if j, dup := roleAt[r.Name]; dup {
			v.errorf(path+".name", "duplicate role %q (first defined at %s)", r.Name, p.at(fmt.Sprintf("roles[%d]", j)))
		} else {
			roleAt[r.Name] = i
		}
		idx.roles[i] = v.checkRole(r, path, idx, labels)
		for _, t := range r.Members.Teams {
			idx.byTeam[t] = appendRole(idx.byTeam[t], int32(i))
		}
		for _, u := range r.Members.Users {
			u = strings.ToLower(u)
			idx.byUser[u] = appendRole(idx.byUser[u], int32(i))
		}
		for _, c := range r.Members.CI {
			repo := strings.ToLower(c.Repository)
			idx.byRepo[repo] = appendRole(idx.byRepo[repo], int32(i))
		}
	}
	v.idx = idx
	v.checkTests(p.Tests)
}

// checkHostKeys refuses zero keys and a key pinned twice for one host. A
// key pinned for several hosts is allowed: one machine may have several
// names.
func (v *validator) checkHostKeys(h Host, path string) {
	first := map[string]int{}
	for j, k := range h.HostKeys {
		kp := fmt.Sprintf("%s.host_keys[%d]", path, j)
		if k.IsZero() {
			v.errorf(kp, "host %q: empty host key; make host keys with ParseHostKey", h.Name)
			continue
		}
		if i, dup := first[string(k.blob)]; dup {
			v.errorf(kp, "host %q: host key %s is pinned twice (first at %s)", h.Name, k, v.p.at(fmt.Sprintf("%s.host_keys[%d]", path, i)))
			continue
		}
		first[string(k.blob)] = j
	}
}

func appendRole(list []int32, r int32) []int32 {
	if n := len(list); n > 0 && list[n-1] == r {
		return list
	}
	return append(list, r)
}

func (v *validator) checkDefaults() {
	d := v.p.Defaults
	if d.TTL <= 0 {
		v.errorf("defaults.ttl", "defaults.ttl must be a positive duration such as 8h")
	}
	if d.MaxTTL <= 0 {
		v.errorf("defaults.max_ttl", "defaults.max_ttl must be a positive duration such as 24h")
	}
	if d.TTL > 0 && d.MaxTTL > 0 && d.TTL > d.MaxTTL {
		v.errorf("defaults.ttl", "defaults.ttl %s is longer than defaults.max_ttl %s", FormatDuration(d.TTL), FormatDuration(d.MaxTTL))
	}
}

func (v *validator) checkRole(r *Role, path string, idx *index, labels map[string][]int32) compiledRole {
	p := v.p
	what := fmt.Sprintf("role %q", r.Name)
	cr := compiledRole{ttl: r.TTL}
	if cr.ttl == 0 {
		cr.ttl = p.Defaults.TTL
	}
	if r.TTL < 0 {
		v.errorf(path+".ttl", "%s: ttl must be positive", what)
	}
	if r.TTL > 0 && p.Defaults.MaxTTL > 0 && r.TTL > p.Defaults.MaxTTL {
		v.errorf(path+".ttl", "%s: ttl %s is longer than defaults.max_ttl %s", what, FormatDuration(r.TTL), FormatDuration(p.Defaults.MaxTTL))
	}
	m := r.Members
	for i, t := range m.Teams {
		if err := validateTeamSlug(t); err != nil {
			v.errorf(fmt.Sprintf("%s.members.teams[%d]", path, i), "%s: %v", what, err)
		}
	}
	for i, u := range m.Users {
		if err := validateLogin(u); err != nil {
			v.errorf(fmt.Sprintf("%s.members.users[%d]", path, i), "%s: user %v", what, err)
		}
	}
	for i, c := range m.CI {
		cp := fmt.Sprintf("%s.members.ci[%d]", path, i)
		if err := validateRepository(c.Repository); err != nil {
			v.errorf(cp+".repository", "%s: ci %v", what, err)
		}
		if err := validateRef(c.Ref); err != nil {
			v.errorf(cp+".ref", "%s: ci %v", what, err)
		}
		if err := validateText("environment", c.Environment); err != nil {
			v.errorf(cp+".environment", "%s: ci %v", what, err)
		}
		if err := validateText("workflow", c.Workflow); err != nil {
			v.errorf(cp+".workflow", "%s: ci %v", what, err)
		}
	}
	for i, pr := range r.Principals {
		if err := ValidatePrincipal(pr); err != nil {
			v.errorf(fmt.Sprintf("%s.principals[%d]", path, i), "%s: %v", what, err)
		}
	}
	for i, s := range r.Hosts {
		sp := fmt.Sprintf("%s.hosts[%d]", path, i)
		sel, err := ParseSelector(s)
		if err != nil {
			v.errorf(sp, "%s: %v", what, err)
			continue
		}
		cr.selectors = append(cr.selectors, sel)
		matched := 0
		switch sel.Kind {
		case "all":
			cr.hosts.all = true
			matched = len(p.Hosts)
		case "label":
			for _, h := range labels[sel.Value] {
				cr.hosts.add(h)
			}
			matched = len(labels[sel.Value])
		case "name":
			if h, ok := idx.hosts[sel.Value]; ok {
				cr.hosts.add(h)
				matched = 1
			}
		case "glob":
			for h := range p.Hosts {
				if Glob(sel.Value, p.Hosts[h].Name) {
					cr.hosts.add(int32(h))
					matched++
				}
			}
		}
		if matched == 0 && len(p.Hosts) > 0 {
			switch sel.Kind {
			case "label":
				v.errorf(sp, "%s: no host has label %q (labels in use: %s)", what, sel.Value, keyList(labels))
			case "name":
				v.errorf(sp, "%s: no host named %q", what, sel.Value)
			default:
				v.errorf(sp, "%s: selector %q matches no host", what, s)
			}
		}
	}
	if err := validateText("force_command", r.ForceCommand); err != nil {
		v.errorf(path+".force_command", "%s: %v", what, err)
	}
	for i, s := range r.SourceAddresses {
		if !s.IsValid() || s.Masked() != s {
			v.errorf(fmt.Sprintf("%s.source_addresses[%d]", path, i), "%s: invalid source address %s", what, s)
		}
	}
	if r.Permissions&^AllPermissions != 0 {
		v.errorf(path+".permissions", "%s: unknown permission bits %#x", what, uint8(r.Permissions&^AllPermissions))
	}
	if len(m.Teams) == 0 && len(m.Users) == 0 && len(m.CI) == 0 {
		v.warnf(path+".members", "%s can never match anyone: it lists no teams, users or ci workloads", what)
	}
	switch {
	case len(r.Principals) == 0:
		v.warnf(path+".principals", "%s grants nothing: it lists no principals", what)
	case len(r.Hosts) == 0:
		v.warnf(path+".hosts", "%s grants nothing: it selects no hosts (use \"*\" for every host)", what)
	}
	return cr
}

// validateRef checks a CI ref pattern: "*" or a full ref starting with
// "refs/", where '*' and '?' are wildcards.
func validateRef(s string) error {
	if s == selectAll {
		return nil
	}
	if !strings.HasPrefix(s, "refs/") {
		return fmt.Errorf("ref %q must be a full ref such as refs/heads/main or refs/tags/v*, or \"*\" for any ref", s)
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || strings.ContainsRune("~^:\\[", r) {
			return fmt.Errorf("ref %q contains %q, which git does not allow in a ref", s, r)
		}
	}
	return nil
}

func keyList[V any](m map[string]V) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return "none"
	}
	return strings.Join(keys, ", ")
}

// checkTests validates tests against the policy; v.idx.hosts must be set.
func (v *validator) checkTests(tests []Test) {
	names := map[string]Pos{}
	for i := range tests {
		t := &tests[i]
		terr := func(sub, format string, args ...any) {
			v.diags = append(v.diags, Diagnostic{Pos: t.at(sub), Severity: SeverityError, Message: fmt.Sprintf(format, args...)})
		}
		what := fmt.Sprintf("test %q", t.Name)
		if strings.TrimSpace(t.Name) == "" {
			terr("name", "test has no name")
		} else if first, dup := names[t.Name]; dup {
			terr("name", "duplicate test %q (first at %s)", t.Name, first)
		} else {
			names[t.Name] = t.at("")
		}
		if err := validateText("test name", t.Name); err != nil {
			terr("name", "%v", err)
		}
		switch {
		case t.CI != nil && (t.User != "" || len(t.Teams) > 0 || t.ID != 0):
			terr("ci", "%s: a test is either a user (user, id, teams) or a ci workload, not both", what)
		case t.CI == nil && t.User == "" && len(t.Teams) == 0:
			terr("", "%s: say who is tested: user (with teams) or ci", what)
		}
		if t.User != "" {
			if err := validateLogin(t.User); err != nil {
				terr("user", "%s: user %v", what, err)
			}
		}
		for j, team := range t.Teams {
			if err := validateTeamSlug(team); err != nil {
				terr(fmt.Sprintf("teams[%d]", j), "%s: %v", what, err)
			}
		}
		if t.CI != nil {
			if err := validateRepository(t.CI.Repository); err != nil {
				terr("ci.repository", "%s: %v", what, err)
			}
			if !strings.HasPrefix(t.CI.Ref, "refs/") {
				terr("ci.ref", "%s: ci ref %q must be a full ref such as refs/heads/main", what, t.CI.Ref)
			}
		}
		if len(t.Allow) == 0 && len(t.Deny) == 0 && t.TTL == 0 {
			terr("", "%s checks nothing: add allow, deny or ttl", what)
		}
		seen := map[string]string{}
		check := func(list []string, key string) {
			for j, req := range list {
				sub := fmt.Sprintf("%s[%d]", key, j)
				principal, host, err := ParseRequest(req)
				if err != nil {
					terr(sub, "%s: %v", what, err)
					continue
				}
				if _, ok := v.idx.hosts[host]; !ok {
					terr(sub, "%s: no host named %q in the policy", what, host)
				}
				if err := ValidatePrincipal(principal); err != nil {
					terr(sub, "%s: %v", what, err)
				}
				if prev, dup := seen[req]; dup && prev != key {
					terr(sub, "%s: %s is in both allow and deny", what, req)
				}
				seen[req] = key
			}
		}
		check(t.Allow, "allow")
		check(t.Deny, "deny")
		if t.TTL > 0 && v.p.Defaults.MaxTTL > 0 && t.TTL > v.p.Defaults.MaxTTL {
			terr("ttl", "%s: ttl %s can never be granted: defaults.max_ttl is %s", what, FormatDuration(t.TTL), FormatDuration(v.p.Defaults.MaxTTL))
		}
	}
}

// index holds what evaluation needs, computed once by Validate.
type index struct {
	hosts  map[string]int32   // host name -> index in Policy.Hosts
	roles  []compiledRole     // parallel to Policy.Roles
	byTeam map[string][]int32 // team slug -> roles, ascending
	byUser map[string][]int32 // lower-case login -> roles, ascending
	byRepo map[string][]int32 // lower-case repository -> roles with a CI entry for it
}

type compiledRole struct {
	hosts     hostSet
	selectors []Selector
	ttl       time.Duration // effective: Role.TTL or Defaults.TTL
}

// hostSet is a bitset over Policy.Hosts, or every host.
type hostSet struct {
	all  bool
	bits []uint64
}

func (s *hostSet) add(h int32) {
	w := int(h) / 64
	if w >= len(s.bits) {
		s.bits = append(s.bits, make([]uint64, w+1-len(s.bits))...)
	}
	s.bits[w] |= 1 << (uint(h) % 64)
}

func (s *hostSet) has(h int32) bool {
	if s.all {
		return true
	}
	w := int(h) / 64
	return w < len(s.bits) && s.bits[w]&(1<<(uint(h)%64)) != 0
}

// each calls f for every host in the set, in index order, among n hosts.
func (s *hostSet) each(n int, f func(h int32)) {
	if s.all {
		for h := 0; h < n; h++ {
			f(int32(h))
		}
		return
	}
	for w, word := range s.bits {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			f(int32(w*64 + b))
			word &= word - 1
		}
	}
}
