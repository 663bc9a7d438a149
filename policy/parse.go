package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Parse reads a policy file and validates it. name is used in diagnostics.
//
// The format is strict: unknown keys, duplicate keys, values of the wrong
// type, YAML anchors and aliases, and more than one document are errors. On
// failure the error is a *ValidationError listing every problem found with
// its file:line:col; on success the returned policy's Warnings may still
// list problems worth fixing.
func Parse(name string, data []byte) (*Policy, error) {
	d := newDecoder(name)
	p := &Policy{File: name, pos: d.pos}
	root := d.document(data)
	if root != nil {
		d.policy(root, p)
	}
	if d.failed() {
		return nil, &ValidationError{Diagnostics: sortDiagnostics(d.diags)}
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// decoder walks a yaml.Node tree, recording the position of every value it
// decodes under a path such as "roles[2].principals[0]" and collecting
// diagnostics instead of stopping at the first problem.
type decoder struct {
	file  string
	diags []Diagnostic
	pos   map[string]Pos
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, pos: map[string]Pos{}}
}

func (d *decoder) failed() bool {
	for _, x := range d.diags {
		if x.Severity == SeverityError {
			return true
		}
	}
	return false
}

func (d *decoder) at(n *yaml.Node) Pos {
	return Pos{File: d.file, Line: n.Line, Col: n.Column}
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.diags = append(d.diags, Diagnostic{Pos: d.at(n), Severity: SeverityError, Message: fmt.Sprintf(format, args...)})
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data into a single YAML document and returns its top
// node, or nil after recording a diagnostic.
func (d *decoder) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		pos := Pos{File: d.file, Line: 1, Col: 1}
		msg := err.Error()
		if errors.Is(err, io.EOF) {
			msg = "empty policy file"
		} else if m := yamlLine.FindStringSubmatch(msg); m != nil {
			// yaml.v3 reports syntax errors only as text; the line number
			// is what makes the diagnostic useful on a pull request.
			pos.Line, _ = strconv.Atoi(m[1])
			msg = "invalid YAML: " + m[2]
		} else {
			msg = "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")
		}
		d.diags = append(d.diags, Diagnostic{Pos: pos, Message: msg})
		return nil
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		n := &next
		if err != nil || n.Line == 0 {
			n = &doc
		}
		d.errorf(n, "a policy file holds exactly one YAML document")
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		d.errorf(&doc, "empty policy file")
		return nil
	}
	if !d.noAliases(doc.Content[0]) {
		return nil
	}
	return doc.Content[0]
}

// noAliases rejects anchors and aliases: they hide what a reviewer reads
// and allow exponential expansion.
func (d *decoder) noAliases(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		d.errorf(n, "YAML anchors and aliases are not allowed in a policy file")
		return false
	}
	ok := true
	for _, c := range n.Content {
		if !d.noAliases(c) {
			ok = false
		}
	}
	return ok
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing (null)"
		case "!!str":
			return fmt.Sprintf("string %q", n.Value)
		case "!!int":
			return "integer " + n.Value
		case "!!bool":
			return "boolean " + n.Value
		case "!!float":
			return "number " + n.Value
		}
		return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
	}
	return "something else"
}

// field decodes one value of a mapping.
type field struct {
	name     string
	required bool
	decode   func(v *yaml.Node)
}

// mapping checks that n is a mapping with only the given keys, each once,
// and calls each field's decoder. The position of each value is recorded
// under path.key.
func (d *decoder) mapping(n *yaml.Node, path, what string, fields []field) bool {
	d.pos[path] = d.at(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s must be a mapping, not %s", what, kindName(n))
		return false
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			d.errorf(k, "%s: keys must be strings, not %s", what, kindName(k))
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			d.errorf(k, "%s: duplicate key %q (first at line %d)", what, k.Value, prev.Line)
			continue
		}
		seen[k.Value] = k
		var f *field
		for j := range fields {
			if fields[j].name == k.Value {
				f = &fields[j]
			}
		}
		if f == nil {
			names := make([]string, len(fields))
			for j := range fields {
				names[j] = fields[j].name
			}
			d.errorf(k, "%s: unknown key %q (known: %s)", what, k.Value, strings.Join(names, ", "))
			continue
		}
		d.pos[join(path, k.Value)] = d.at(v)
		f.decode(v)
	}
	for _, f := range fields {
		if _, ok := seen[f.name]; f.required && !ok {
			d.errorf(n, "%s: missing required key %q", what, f.name)
		}
	}
	return true
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) str(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		d.errorf(n, "%s must be a string, not %s", what, kindName(n))
		return "", false
	}
	return n.Value, true
}

// strList decodes a list of strings; path[i] records each item's position.
func (d *decoder) strList(n *yaml.Node, path, what string) []string {
	out, _ := d.strNodes(n, path, what)
	return out
}

// strNodes is strList that also returns the node of each string, for
// errors about an entry: entries that are not strings are reported and
// left out of both.
func (d *decoder) strNodes(n *yaml.Node, path, what string) ([]string, []*yaml.Node) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "%s must be a list, not %s", what, kindName(n))
		return nil, nil
	}
	out := []string{}
	var nodes []*yaml.Node
	for i, c := range n.Content {
		d.pos[fmt.Sprintf("%s[%d]", path, i)] = d.at(c)
		if s, ok := d.str(c, what+" entries"); ok {
			out = append(out, s)
			nodes = append(nodes, c)
		}
	}
	return out, nodes
}

func (d *decoder) duration(n *yaml.Node, what string) time.Duration {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		d.errorf(n, "%s must be a duration such as 8h, 90m or 1h30m, not %s", what, kindName(n))
		return 0
	}
	s := n.Value
	v, err := time.ParseDuration(s)
	if err != nil {
		d.errorf(n, "%s: %q is not a duration such as 8h, 90m or 1h30m", what, s)
		return 0
	}
	if v <= 0 {
		d.errorf(n, "%s must be positive, not %s", what, s)
		return 0
	}
	return v
}

func (d *decoder) boolean(n *yaml.Node, what string) bool {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		d.errorf(n, "%s must be true or false, not %s", what, kindName(n))
		return false
	}
	return n.Value == "true"
}

func (d *decoder) seq(n *yaml.Node, what string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "%s must be a list, not %s", what, kindName(n))
		return nil
	}
	return n.Content
}

func (d *decoder) policy(n *yaml.Node, p *Policy) {
	d.mapping(n, "", "policy", []field{
		{"version", true, func(v *yaml.Node) {
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
				d.errorf(v, "version must be the integer %d, not %s", Version, kindName(v))
				return
			}
			p.Version, _ = strconv.Atoi(v.Value)
		}},
		{"github", true, func(v *yaml.Node) {
			d.mapping(v, "github", "github", []field{
				{"org", true, func(v *yaml.Node) { p.GitHub.Org, _ = d.str(v, "github.org") }},
			})
		}},
		{"defaults", true, func(v *yaml.Node) {
			d.mapping(v, "defaults", "defaults", []field{
				{"ttl", true, func(v *yaml.Node) { p.Defaults.TTL = d.duration(v, "defaults.ttl") }},
				{"max_ttl", true, func(v *yaml.Node) { p.Defaults.MaxTTL = d.duration(v, "defaults.max_ttl") }},
			})
		}},
		{"hosts", true, func(v *yaml.Node) {
			for i, h := range d.seq(v, "hosts") {
				p.Hosts = append(p.Hosts, d.host(h, fmt.Sprintf("hosts[%d]", i)))
			}
		}},
		{"roles", true, func(v *yaml.Node) {
			for i, r := range d.seq(v, "roles") {
				p.Roles = append(p.Roles, d.role(r, fmt.Sprintf("roles[%d]", i)))
			}
		}},
		{"tests", false, func(v *yaml.Node) {
			for i, t := range d.seq(v, "tests") {
				p.Tests = append(p.Tests, d.test(t, fmt.Sprintf("tests[%d]", i)))
			}
		}},
	})
}

func (d *decoder) host(n *yaml.Node, path string) Host {
	var h Host
	var keys *yaml.Node
	d.mapping(n, path, "host", []field{
		{"name", true, func(v *yaml.Node) { h.Name, _ = d.str(v, "host name") }},
		{"address", true, func(v *yaml.Node) { h.Address, _ = d.str(v, "host address") }},
		{"labels", false, func(v *yaml.Node) { h.Labels = d.strList(v, path+".labels", "host labels") }},
		{"host_keys", false, func(v *yaml.Node) { keys = v }},
	})
	if keys != nil {
		// Decoded after the mapping so that messages name the host.
		h.HostKeys = d.hostKeys(keys, path+".host_keys", fmt.Sprintf("host %q", h.Name))
	}
	return h
}

// hostKeys decodes a host's host_keys: a non-empty list of public keys in
// authorized_keys form.
func (d *decoder) hostKeys(n *yaml.Node, path, what string) []HostKey {
	items := d.seq(n, what+" host_keys")
	if n.Kind == yaml.SequenceNode && len(items) == 0 {
		d.errorf(n, "%s: host_keys is empty; omit the key to accept only a host certificate from the host CA", what)
	}
	var out []HostKey
	for i, c := range items {
		d.pos[fmt.Sprintf("%s[%d]", path, i)] = d.at(c)
		s, ok := d.str(c, what+" host_keys entries")
		if !ok {
			continue
		}
		k, err := ParseHostKey(s)
		if err != nil {
			d.errorf(c, "%s: %v", what, err)
			continue
		}
		out = append(out, k)
	}
	return out
}

func (d *decoder) role(n *yaml.Node, path string) Role {
	var r Role
	what := "role"
	// Name the role in messages when we can find its name first.
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "name" && n.Content[i+1].Kind == yaml.ScalarNode {
				what = fmt.Sprintf("role %q", n.Content[i+1].Value)
			}
		}
	}
	d.mapping(n, path, what, []field{
		{"name", true, func(v *yaml.Node) { r.Name, _ = d.str(v, "role name") }},
		{"members", true, func(v *yaml.Node) { r.Members = d.members(v, path+".members", what) }},
		{"principals", true, func(v *yaml.Node) { r.Principals = d.strList(v, path+".principals", what+" principals") }},
		{"hosts", true, func(v *yaml.Node) { r.Hosts = d.strList(v, path+".hosts", what+" hosts") }},
		{"ttl", false, func(v *yaml.Node) { r.TTL = d.duration(v, what+" ttl") }},
		{"permissions", false, func(v *yaml.Node) {
			list, nodes := d.strNodes(v, path+".permissions", what+" permissions")
			for i, s := range list {
				perm, err := ParsePermission(s)
				if err != nil {
					d.errorf(nodes[i], "%s: %v", what, err)
					continue
				}
				r.Permissions |= perm
			}
		}},
		{"force_command", false, func(v *yaml.Node) {
			if s, ok := d.str(v, what+" force_command"); ok {
				if strings.TrimSpace(s) == "" {
					d.errorf(v, "%s: force_command is empty; omit the key for no forced command", what)
				}
				r.ForceCommand = s
			}
		}},
		{"source_addresses", false, func(v *yaml.Node) {
			list, nodes := d.strNodes(v, path+".source_addresses", what+" source_addresses")
			if list != nil && len(list) == 0 && len(v.Content) == 0 {
				d.errorf(v, "%s: source_addresses is empty; omit the key to allow any source address", what)
			}
			for i, s := range list {
				pfx, err := parseCIDR(s)
				if err != nil {
					d.errorf(nodes[i], "%s: %v", what, err)
					continue
				}
				r.SourceAddresses = append(r.SourceAddresses, pfx)
			}
		}},
		{"record_input", false, func(v *yaml.Node) { r.RecordInput = d.boolean(v, what+" record_input") }},
	})
	return r
}

// parseCIDR accepts "10.0.0.0/8", "2001:db8::/32" or a single address. A
// prefix with host bits set is refused: "10.0.0.1/8" is likely a typo for
// one address or for "10.0.0.0/8", and a reviewer cannot tell which.
func parseCIDR(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("invalid source address %q: want a CIDR such as 203.0.113.0/24", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: want e.g. 203.0.113.0/24", s)
	}
	if pfx.Masked() != pfx {
		return netip.Prefix{}, fmt.Errorf("CIDR %q has bits set after the prefix; did you mean %s?", s, pfx.Masked())
	}
	return pfx, nil
}

func (d *decoder) members(n *yaml.Node, path, what string) Members {
	m := Members{}
	d.mapping(n, path, what+" members", []field{
		{"teams", false, func(v *yaml.Node) { m.Teams = d.strList(v, path+".teams", what+" teams") }},
		{"users", false, func(v *yaml.Node) { m.Users = d.strList(v, path+".users", what+" users") }},
		{"ci", false, func(v *yaml.Node) {
			for i, c := range d.seq(v, what+" ci") {
				p := fmt.Sprintf("%s.ci[%d]", path, i)
				var cm CIMatch
				d.mapping(c, p, what+" ci entry", []field{
					{"repository", true, func(v *yaml.Node) { cm.Repository, _ = d.str(v, "ci repository") }},
					{"ref", true, func(v *yaml.Node) { cm.Ref, _ = d.str(v, "ci ref") }},
					{"environment", false, func(v *yaml.Node) { cm.Environment, _ = d.str(v, "ci environment") }},
					{"workflow", false, func(v *yaml.Node) { cm.Workflow, _ = d.str(v, "ci workflow") }},
				})
				m.CI = append(m.CI, cm)
			}
		}},
	})
	return m
}

func (d *decoder) test(n *yaml.Node, path string) Test {
	t := Test{Pos: d.at(n)}
	d.pos[path] = t.Pos
	// Positions inside a test stay with the test, so tests read from a
	// separate file report their own file and evaluation never needs the
	// policy's position table.
	sub := newDecoder(d.file)
	sub.testBody(n, &t)
	t.pos = sub.pos
	d.diags = append(d.diags, sub.diags...)
	return t
}

func (d *decoder) testBody(n *yaml.Node, t *Test) {
	what := "test"
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "name" && n.Content[i+1].Kind == yaml.ScalarNode {
				what = fmt.Sprintf("test %q", n.Content[i+1].Value)
			}
		}
	}
	d.mapping(n, "", what, []field{
		{"name", true, func(v *yaml.Node) { t.Name, _ = d.str(v, "test name") }},
		{"user", false, func(v *yaml.Node) { t.User, _ = d.str(v, what+" user") }},
		{"id", false, func(v *yaml.Node) {
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
				d.errorf(v, "%s: id must be an integer, not %s", what, kindName(v))
				return
			}
			id, err := strconv.ParseInt(v.Value, 0, 64)
			if err != nil || id <= 0 {
				d.errorf(v, "%s: id must be a positive GitHub user ID, not %s", what, v.Value)
				return
			}
			t.ID = id
		}},
		{"teams", false, func(v *yaml.Node) { t.Teams = d.strList(v, "teams", what+" teams") }},
		{"ci", false, func(v *yaml.Node) {
			var c CIClaims
			d.mapping(v, "ci", what+" ci", []field{
				{"repository", true, func(v *yaml.Node) { c.Repository, _ = d.str(v, "ci repository") }},
				{"ref", true, func(v *yaml.Node) { c.Ref, _ = d.str(v, "ci ref") }},
				{"environment", false, func(v *yaml.Node) { c.Environment, _ = d.str(v, "ci environment") }},
				{"workflow", false, func(v *yaml.Node) { c.Workflow, _ = d.str(v, "ci workflow") }},
			})
			t.CI = &c
		}},
		{"allow", false, func(v *yaml.Node) { t.Allow = d.strList(v, "allow", what+" allow") }},
		{"deny", false, func(v *yaml.Node) { t.Deny = d.strList(v, "deny", what+" deny") }},
		{"ttl", false, func(v *yaml.Node) { t.TTL = d.duration(v, what+" ttl") }},
	})
}

func sortDiagnostics(ds []Diagnostic) []Diagnostic {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i].Pos, ds[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	return ds
}
