package policy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// Explanation says which roles apply to an identity, what they grant
// together, and how given requests are decided. It is what `sallyport
// policy explain` prints, as text or JSON.
type Explanation struct {
	Identity Identity        `json:"identity"`
	Roles    []ExplainedRole `json:"roles"`
	// Principals and TTL are what the identity's certificate would carry.
	Principals []string `json:"principals"`
	TTL        string   `json:"ttl"`
	TTLReason  string   `json:"ttl_reason"`
	// Access groups the granted pairs by principal and terms.
	Access   []AccessGroup `json:"access"`
	Requests []Decision    `json:"requests,omitempty"`
	Rules    string        `json:"rules"`
}

// ExplainedRole is a role that applies to the identity.
type ExplainedRole struct {
	Name string   `json:"name"`
	Via  []string `json:"via"`
	TTL  string   `json:"ttl"`
	Pos  Pos      `json:"pos"`
}

// AccessGroup is a principal granted on several hosts on the same terms.
type AccessGroup struct {
	Principal string   `json:"principal"`
	Hosts     []string `json:"hosts"`
	// Allow is false when the roles granting these pairs conflict; Reason
	// then says how.
	Allow           bool           `json:"allow"`
	Reason          string         `json:"reason,omitempty"`
	Roles           []string       `json:"roles"`
	Permissions     Permissions    `json:"permissions"`
	ForceCommand    string         `json:"force_command,omitempty"`
	SourceAddresses []netip.Prefix `json:"source_addresses,omitempty"`
	RecordInput     bool           `json:"record_input"`
}

// Explain evaluates id and each "principal@host" request.
func (p *Policy) Explain(id Identity, requests ...string) *Explanation {
	g := p.Grant(id)
	e := &Explanation{
		Identity:   id,
		Roles:      []ExplainedRole{},
		Principals: g.Principals(),
		TTL:        FormatDuration(g.TTL()),
		TTLReason:  g.ttlReason(),
		Access:     groupAccess(g),
		Rules:      CombinationRules,
	}
	for _, m := range g.Matches() {
		e.Roles = append(e.Roles, ExplainedRole{Name: m.Name, Via: m.Via, TTL: FormatDuration(m.TTL), Pos: p.at(fmt.Sprintf("roles[%d]", m.index))})
	}
	for _, r := range requests {
		e.Requests = append(e.Requests, g.decide(r))
	}
	return e
}

// groupAccess collects the grant's pairs into groups of one principal on
// several hosts with identical terms, in order of first appearance.
func groupAccess(g *Grant) []AccessGroup {
	groups := []AccessGroup{}
	at := map[string]int{}
	g.Each(func(d Decision) bool {
		key := fmt.Sprintf("%s|%t|%q|%d|%q|%v|%t", d.Principal, d.Allow, d.Roles, d.Permissions, d.ForceCommand, d.SourceAddresses, d.RecordInput)
		i, ok := at[key]
		if !ok {
			i = len(groups)
			at[key] = i
			grp := AccessGroup{
				Principal: d.Principal, Allow: d.Allow, Roles: d.Roles,
				Permissions: d.Permissions, ForceCommand: d.ForceCommand,
				SourceAddresses: d.SourceAddresses, RecordInput: d.RecordInput,
			}
			if !d.Allow {
				grp.Reason = d.Reason
			}
			groups = append(groups, grp)
		}
		groups[i].Hosts = append(groups[i].Hosts, d.Host)
		return true
	})
	return groups
}

// WriteJSON writes the explanation as indented JSON.
func (e *Explanation) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(e)
}

// WriteText writes the explanation for people.
func (e *Explanation) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Identity: %s\n\n", e.Identity)
	if len(e.Roles) == 0 {
		b.WriteString("No role applies: everything is denied.\n")
	} else {
		b.WriteString("Matching roles:\n")
		for _, r := range e.Roles {
			fmt.Fprintf(&b, "  %s via %s, ttl %s (%s)\n", r.Name, strings.Join(r.Via, ", "), r.TTL, r.Pos)
		}
		b.WriteString("\nCertificate:\n")
		fmt.Fprintf(&b, "  principals: %s\n", strings.Join(e.Principals, ", "))
		fmt.Fprintf(&b, "  ttl: %s (%s)\n", e.TTL, e.TTLReason)
		b.WriteString("\nAccess:\n")
		if len(e.Access) == 0 {
			b.WriteString("  none\n")
		}
		for _, a := range e.Access {
			verdict := ""
			if !a.Allow {
				verdict = "DENIED "
			}
			fmt.Fprintf(&b, "  %s%s on %s\n", verdict, a.Principal, strings.Join(a.Hosts, ", "))
			fmt.Fprintf(&b, "    roles: %s\n", strings.Join(a.Roles, ", "))
			if !a.Allow {
				fmt.Fprintf(&b, "    reason: %s\n", a.Reason)
				continue
			}
			writeTerms(&b, "    ", a.Permissions, a.ForceCommand, a.SourceAddresses, a.RecordInput)
		}
	}
	for _, d := range e.Requests {
		verdict := "DENY"
		if d.Allow {
			verdict = "ALLOW"
		}
		fmt.Fprintf(&b, "\nRequest %s@%s: %s\n  %s\n", d.Principal, d.Host, verdict, d.Reason)
		if d.Allow {
			writeTerms(&b, "  ", d.Permissions, d.ForceCommand, d.SourceAddresses, d.RecordInput)
		}
	}
	b.WriteString("\n")
	b.WriteString(e.Rules)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeTerms(b *strings.Builder, indent string, perms Permissions, force string, sources []netip.Prefix, record bool) {
	fmt.Fprintf(b, "%spermissions: %s\n", indent, perms)
	if force != "" {
		fmt.Fprintf(b, "%sforced command: %s\n", indent, force)
	}
	if sources != nil {
		fmt.Fprintf(b, "%ssource addresses: %s\n", indent, prefixList(sources))
	}
	if record {
		fmt.Fprintf(b, "%sinput recorded: yes\n", indent)
	}
}

func prefixList(ps []netip.Prefix) string {
	if ps == nil {
		return "any"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
