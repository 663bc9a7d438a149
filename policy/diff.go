package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Roster maps team slugs to the logins in each team. With a roster, a diff
// is computed per person (a login with all their teams) instead of per team,
// so the effect of roles combining is exact.
type Roster struct {
	// Teams maps a team slug to its members' logins.
	Teams map[string][]string
}

// ParseRoster reads a members file:
//
//	teams:
//	  infra: [alice, carol]
//	  website: [bob]
func ParseRoster(name string, data []byte) (*Roster, error) {
	d := newDecoder(name)
	r := &Roster{Teams: map[string][]string{}}
	if root := d.document(data); root != nil {
		d.mapping(root, "", "members file", []field{
			{"teams", true, func(v *yaml.Node) {
				if v.Kind != yaml.MappingNode {
					d.errorf(v, "teams must be a mapping from team slug to logins, not %s", kindName(v))
					return
				}
				for i := 0; i+1 < len(v.Content); i += 2 {
					k, val := v.Content[i], v.Content[i+1]
					slug, ok := d.str(k, "team slug")
					if !ok {
						continue
					}
					if err := validateTeamSlug(slug); err != nil {
						d.errorf(k, "%v", err)
					}
					if _, dup := r.Teams[slug]; dup {
						d.errorf(k, "duplicate team %q", slug)
						continue
					}
					logins := d.strList(val, "teams."+slug, "members of team "+slug)
					for j, l := range logins {
						if err := validateLogin(l); err != nil {
							d.errorf(val.Content[j], "team %s: %v", slug, err)
						}
					}
					r.Teams[slug] = logins
				}
			}},
		})
	}
	if d.failed() {
		return nil, &ValidationError{Diagnostics: sortDiagnostics(d.diags)}
	}
	return r, nil
}

// Diff is every change in access between two versions of a policy.
type Diff struct {
	// PerPerson is true when a Roster was given and Subjects are people.
	PerPerson bool            `json:"per_person"`
	Settings  []SettingChange `json:"settings"`
	Hosts     []HostChange    `json:"hosts"`
	Subjects  []SubjectChange `json:"subjects"`
}

// Empty reports whether nothing changed in access.
func (d *Diff) Empty() bool {
	return len(d.Settings) == 0 && len(d.Hosts) == 0 && len(d.Subjects) == 0
}

// SettingChange is a changed policy-wide value.
type SettingChange struct {
	Setting string `json:"setting"`
	Old     string `json:"old"`
	New     string `json:"new"`
}

// HostChange is a host added, removed or changed.
type HostChange struct {
	Name string `json:"name"`
	// Change is "added", "removed" or "changed".
	Change string `json:"change"`
	Old    *Host  `json:"old,omitempty"`
	New    *Host  `json:"new,omitempty"`
	// Details say what changed, in plain words.
	Details []string `json:"details,omitempty"`
}

// Subject is whoever gains or loses access.
type Subject struct {
	// Kind is "person" (with a roster), "team", "user" or "ci".
	Kind string `json:"kind"`
	// Name is the login, team slug or CI workload description.
	Name string `json:"name"`
	// Teams are a person's teams, from the roster.
	Teams []string `json:"teams,omitempty"`
}

func (s Subject) String() string {
	if s.Kind == "person" && len(s.Teams) > 0 {
		return fmt.Sprintf("%s (teams %s)", s.Name, strings.Join(s.Teams, ", "))
	}
	if s.Kind == "person" {
		return s.Name
	}
	return s.Kind + " " + s.Name
}

// SubjectChange is how one subject's access changed.
type SubjectChange struct {
	Subject Subject       `json:"subject"`
	Gained  []AccessGroup `json:"gained,omitempty"`
	Lost    []AccessGroup `json:"lost,omitempty"`
	Changed []TermsChange `json:"changed,omitempty"`
	// TTL is set when the certificate lifetime changed while the subject
	// had access before and after.
	TTL *SettingChange `json:"ttl,omitempty"`
}

// TermsChange is a principal on hosts it keeps, on changed terms.
type TermsChange struct {
	Principal string   `json:"principal"`
	Hosts     []string `json:"hosts"`
	// Changes say what changed, in plain words, e.g.
	// "permissions pty, port-forwarding -> pty".
	Changes []string `json:"changes"`
}

// Compare computes every change in access from old to new. With a roster,
// subjects are people; without, each team, user and CI workload named in
// either policy is a subject on its own.
func Compare(old, new *Policy, roster *Roster) *Diff {
	d := &Diff{PerPerson: roster != nil, Settings: []SettingChange{}, Hosts: []HostChange{}, Subjects: []SubjectChange{}}
	setting := func(name, a, b string) {
		if a != b {
			d.Settings = append(d.Settings, SettingChange{name, a, b})
		}
	}
	setting("github.org", old.GitHub.Org, new.GitHub.Org)
	setting("defaults.ttl", FormatDuration(old.Defaults.TTL), FormatDuration(new.Defaults.TTL))
	setting("defaults.max_ttl", FormatDuration(old.Defaults.MaxTTL), FormatDuration(new.Defaults.MaxTTL))
	d.Hosts = compareHosts(old, new)
	for _, s := range subjects(old, new, roster) {
		if c := compareSubject(old, new, s); c != nil {
			d.Subjects = append(d.Subjects, *c)
		}
	}
	return d
}

func compareHosts(old, new *Policy) []HostChange {
	out := []HostChange{}
	byName := map[string]*Host{}
	for i := range old.Hosts {
		byName[old.Hosts[i].Name] = &old.Hosts[i]
	}
	seen := map[string]bool{}
	for i := range new.Hosts {
		h := &new.Hosts[i]
		seen[h.Name] = true
		o, ok := byName[h.Name]
		if !ok {
			out = append(out, HostChange{Name: h.Name, Change: "added", New: h})
			continue
		}
		var details []string
		if o.Address != h.Address {
			details = append(details, fmt.Sprintf("address %s -> %s", o.Address, h.Address))
		}
		ol, nl := slices.Sorted(slices.Values(o.Labels)), slices.Sorted(slices.Values(h.Labels))
		ol, nl = slices.Compact(ol), slices.Compact(nl)
		if !slices.Equal(ol, nl) {
			details = append(details, fmt.Sprintf("labels %s -> %s", listOrNone(ol), listOrNone(nl)))
		}
		if added, removed := hostKeyChanges(o.HostKeys, h.HostKeys); added != nil || removed != nil {
			details = append(details, pinnedKeysText(added, removed))
		}
		if details != nil {
			out = append(out, HostChange{Name: h.Name, Change: "changed", Old: o, New: h, Details: details})
		}
	}
	for i := range old.Hosts {
		if h := &old.Hosts[i]; !seen[h.Name] {
			out = append(out, HostChange{Name: h.Name, Change: "removed", Old: h})
		}
	}
	return out
}

// hostKeyChanges names the keys pinned in new but not in old, and in old
// but not in new, sorted. Comments and order do not count: the bastion
// compares keys only.
func hostKeyChanges(old, new []HostKey) (added, removed []string) {
	diff := func(a, b []HostKey) []string {
		var out []string
		for _, k := range a {
			if !slices.ContainsFunc(b, k.Equal) && !slices.Contains(out, k.String()) {
				out = append(out, k.String())
			}
		}
		slices.Sort(out)
		return out
	}
	return diff(new, old), diff(old, new)
}

// pinnedKeysText says how a host's pinned keys changed, e.g. "pinned host
// keys: added ssh-ed25519 SHA256:..., removed ssh-rsa SHA256:...".
func pinnedKeysText(added, removed []string) string {
	var parts []string
	if added != nil {
		parts = append(parts, "added "+andList(added))
	}
	if removed != nil {
		parts = append(parts, "removed "+andList(removed))
	}
	return "pinned host keys: " + strings.Join(parts, ", ")
}

// andList joins "a", "a and b", "a, b and c".
func andList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

type subject struct {
	Subject
	id Identity
}

// subjects lists everyone whose access the two policies may decide.
func subjects(old, new *Policy, roster *Roster) []subject {
	var out []subject
	teams := map[string]bool{}
	users := map[string]string{} // lower-case login -> spelling
	ci := map[string]CIMatch{}
	for _, p := range []*Policy{old, new} {
		for _, r := range p.Roles {
			for _, t := range r.Members.Teams {
				teams[t] = true
			}
			for _, u := range r.Members.Users {
				if _, ok := users[strings.ToLower(u)]; !ok {
					users[strings.ToLower(u)] = u
				}
			}
			for _, c := range r.Members.CI {
				ci[c.String()] = c
			}
		}
	}
	if roster != nil {
		people := map[string][]string{}
		for slug, logins := range roster.Teams {
			for _, l := range logins {
				k := strings.ToLower(l)
				if _, ok := users[k]; !ok {
					users[k] = l
				}
				people[k] = append(people[k], slug)
			}
		}
		for k, login := range users {
			t := people[k]
			sort.Strings(t)
			t = slices.Compact(t)
			out = append(out, subject{Subject{Kind: "person", Name: login, Teams: t}, Identity{Login: login, Teams: t}})
		}
		// Teams the roster does not list still get a line of their own.
		for t := range teams {
			if _, ok := roster.Teams[t]; !ok {
				out = append(out, subject{Subject{Kind: "team", Name: t}, Identity{Teams: []string{t}}})
			}
		}
	} else {
		for t := range teams {
			out = append(out, subject{Subject{Kind: "team", Name: t}, Identity{Teams: []string{t}}})
		}
		for _, u := range users {
			out = append(out, subject{Subject{Kind: "user", Name: u}, Identity{Login: u}})
		}
	}
	for name, c := range ci {
		claims := CIClaims(c)
		out = append(out, subject{Subject{Kind: "ci", Name: name}, Identity{CI: &claims}})
	}
	kindOrder := map[string]int{"person": 0, "team": 1, "user": 2, "ci": 3}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return kindOrder[out[i].Kind] < kindOrder[out[j].Kind]
		}
		return out[i].Name < out[j].Name
	})
	return out
}

type pair struct{ principal, host string }

func accessMap(g *Grant) (map[pair]Decision, []pair) {
	m := map[pair]Decision{}
	var order []pair
	g.Each(func(d Decision) bool {
		k := pair{d.Principal, d.Host}
		m[k] = d
		order = append(order, k)
		return true
	})
	return m, order
}

func compareSubject(old, new *Policy, s subject) *SubjectChange {
	og, ng := old.Grant(s.id), new.Grant(s.id)
	oa, oorder := accessMap(og)
	na, norder := accessMap(ng)
	c := &SubjectChange{Subject: s.Subject}
	var gained, lost []Decision
	type changed struct {
		d       Decision
		changes []string
	}
	var chg []changed
	for _, k := range norder {
		n := na[k]
		o, had := oa[k]
		switch {
		case n.Allow && (!had || !o.Allow):
			gained = append(gained, n)
		case !n.Allow && had && o.Allow:
			lost = append(lost, Decision{Principal: n.Principal, Host: n.Host, Roles: n.Roles, Reason: n.Reason})
		case n.Allow && o.Allow:
			if ch := termChanges(o, n); ch != nil {
				chg = append(chg, changed{n, ch})
			}
		}
	}
	for _, k := range oorder {
		if _, has := na[k]; !has && oa[k].Allow {
			o := oa[k]
			lost = append(lost, Decision{Principal: o.Principal, Host: o.Host, Roles: o.Roles})
		}
	}
	c.Gained = groupDecisions(gained)
	c.Lost = groupDecisions(lost)
	at := map[string]int{}
	for _, x := range chg {
		key := x.d.Principal + "|" + strings.Join(x.changes, "|")
		i, ok := at[key]
		if !ok {
			i = len(c.Changed)
			at[key] = i
			c.Changed = append(c.Changed, TermsChange{Principal: x.d.Principal, Changes: x.changes})
		}
		c.Changed[i].Hosts = append(c.Changed[i].Hosts, x.d.Host)
	}
	if og.TTL() != 0 && ng.TTL() != 0 && og.TTL() != ng.TTL() {
		c.TTL = &SettingChange{Setting: "ttl", Old: FormatDuration(og.TTL()), New: FormatDuration(ng.TTL())}
	}
	if len(c.Gained) == 0 && len(c.Lost) == 0 && len(c.Changed) == 0 && c.TTL == nil {
		return nil
	}
	return c
}

func groupDecisions(ds []Decision) []AccessGroup {
	groups := []AccessGroup{}
	at := map[string]int{}
	for _, d := range ds {
		reason := ""
		if !d.Allow {
			reason = d.Reason // allowed reasons name the host; denied ones do not
		}
		key := fmt.Sprintf("%s|%t|%q|%q|%d|%q|%v|%t", d.Principal, d.Allow, reason, d.Roles, d.Permissions, d.ForceCommand, d.SourceAddresses, d.RecordInput)
		i, ok := at[key]
		if !ok {
			i = len(groups)
			at[key] = i
			g := AccessGroup{Principal: d.Principal, Allow: d.Allow, Roles: d.Roles, Permissions: d.Permissions,
				ForceCommand: d.ForceCommand, SourceAddresses: d.SourceAddresses, RecordInput: d.RecordInput}
			if !d.Allow {
				g.Reason = d.Reason
			}
			groups = append(groups, g)
		}
		groups[i].Hosts = append(groups[i].Hosts, d.Host)
	}
	return groups
}

// termChanges describes how the terms of an allowed pair changed, or nil.
func termChanges(o, n Decision) []string {
	var ch []string
	if o.Permissions != n.Permissions {
		ch = append(ch, fmt.Sprintf("permissions %s -> %s", o.Permissions, n.Permissions))
	}
	if o.ForceCommand != n.ForceCommand {
		ch = append(ch, fmt.Sprintf("forced command %s -> %s", orNone(o.ForceCommand), orNone(n.ForceCommand)))
	}
	if !slices.Equal(o.SourceAddresses, n.SourceAddresses) || (o.SourceAddresses == nil) != (n.SourceAddresses == nil) {
		ch = append(ch, fmt.Sprintf("source addresses %s -> %s", prefixList(o.SourceAddresses), prefixList(n.SourceAddresses)))
	}
	if o.RecordInput != n.RecordInput {
		ch = append(ch, fmt.Sprintf("input recording %s -> %s", onOff(o.RecordInput), onOff(n.RecordInput)))
	}
	return ch
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
