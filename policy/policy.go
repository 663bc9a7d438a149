package policy

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Version is the only policy file format version this package reads.
const Version = 1

// Policy is one access policy file: the organisation, the hosts, the roles
// that grant access to them, and the tests that pin the intended outcome.
//
// A Policy is ready for evaluation once Validate has succeeded (Parse calls
// it). It must not be modified afterwards: Validate precomputes the indexes
// that evaluation uses. Evaluating a Policy that has not been validated
// denies everything.
type Policy struct {
	// File names the source in diagnostics, e.g. "policy.yaml". Empty for a
	// policy built in code.
	File string

	// Version of the file format; must be 1.
	Version int

	// GitHub names the organisation whose teams the roles refer to.
	GitHub GitHub

	// Defaults apply to roles that do not set their own values.
	Defaults Defaults

	// Hosts are the targets the bastion may connect to. A host that no role
	// selects is reachable by nobody.
	Hosts []Host

	// Roles grant access. Order does not change the outcome; it only orders
	// explanations.
	Roles []Role

	// Tests kept in the policy file itself.
	Tests []Test

	// Warnings found by Validate that do not make the policy invalid, such as
	// a role that can never match anyone or grants nothing.
	Warnings []Diagnostic

	pos map[string]Pos // source positions by path, e.g. "roles[2].hosts[0]"
	idx *index
}

// GitHub is the policy's GitHub organisation.
type GitHub struct {
	// Org is the organisation's login. Humans must be members of it; the
	// identity layer checks membership before building an Identity.
	Org string
}

// Defaults are the policy-wide certificate lifetimes.
type Defaults struct {
	// TTL is the certificate lifetime for roles that set none. Required.
	TTL time.Duration
	// MaxTTL caps every lifetime: no role and no default may exceed it.
	// Required.
	MaxTTL time.Duration
}

// Host is one target reachable through the bastion.
type Host struct {
	// Name is how users and roles refer to the host: lower-case DNS-like
	// labels, e.g. "web1" or "web1.eu".
	Name string `json:"name"`
	// Address is the host:port the bastion dials.
	Address string `json:"address"`
	// Labels group hosts for role selectors such as "label:web".
	Labels []string `json:"labels,omitempty"`
	// HostKeys are plain host keys the bastion accepts from this host
	// besides a host certificate from the host CA, for a server that has
	// no such certificate. Nil means only a host certificate is accepted.
	// The same key may be pinned for several hosts: one machine may have
	// several names.
	HostKeys []HostKey `json:"host_keys,omitempty"`
}

// Host returns the host named name, or false if there is none or p has not
// been validated. The Host shares its lists with p; do not modify them.
func (p *Policy) Host(name string) (Host, bool) {
	if p.idx == nil {
		return Host{}, false
	}
	i, ok := p.idx.hosts[name]
	if !ok {
		return Host{}, false
	}
	return p.Hosts[i], true
}

// Role grants its members a set of principals on a set of hosts.
type Role struct {
	// Name identifies the role in explanations and diffs; unique.
	Name string
	// Members says who the role applies to. Empty matches nobody.
	Members Members
	// Principals are the remote user names granted. Empty grants nothing.
	Principals []string
	// Hosts are selectors: an exact host name, a glob over names ("web*"),
	// "label:NAME", or "*" for every host. Empty grants nothing.
	Hosts []string
	// TTL is the certificate lifetime this role allows; zero means
	// Defaults.TTL.
	TTL time.Duration
	// Permissions are the session features allowed; zero allows none.
	Permissions Permissions
	// ForceCommand, when set, is the only command the role's sessions run.
	ForceCommand string
	// SourceAddresses, when set, restricts the client addresses the role's
	// sessions may come from; nil means any address.
	SourceAddresses []netip.Prefix
	// RecordInput records keystrokes as well as output.
	RecordInput bool
}

// Members lists who a role applies to. A role matches an identity when any
// one entry matches.
type Members struct {
	// Teams are GitHub team slugs in the policy's organisation.
	Teams []string
	// Users are GitHub logins, compared case-insensitively.
	Users []string
	// CI are GitHub Actions workloads, identified by their OIDC claims.
	CI []CIMatch
}

// CIMatch selects GitHub Actions workloads by their OIDC token claims.
type CIMatch struct {
	// Repository is "owner/name"; required; compared case-insensitively.
	Repository string
	// Ref is the git ref, e.g. "refs/heads/main"; required. It may be a glob
	// ("refs/tags/v*") or "*" for any ref.
	Ref string
	// Environment, when set, must equal the token's environment claim; empty
	// means the environment is not checked.
	Environment string
	// Workflow, when set, must equal the token's workflow claim; empty means
	// the workflow is not checked.
	Workflow string
}

func (m CIMatch) String() string {
	var b strings.Builder
	b.WriteString(m.Repository)
	fmt.Fprintf(&b, " ref %s", m.Ref)
	if m.Environment != "" {
		fmt.Fprintf(&b, " environment %s", m.Environment)
	}
	if m.Workflow != "" {
		fmt.Fprintf(&b, " workflow %q", m.Workflow)
	}
	return b.String()
}

// Permissions is a set of session features a certificate may permit.
// The zero value permits none.
type Permissions uint8

// The permissions a role may grant, named in policy files as shown.
const (
	PTY             Permissions = 1 << iota // "pty"
	PortForwarding                          // "port-forwarding"
	AgentForwarding                         // "agent-forwarding"
	X11Forwarding                           // "x11-forwarding"
	UserRC                                  // "user-rc"

	// AllPermissions is every permission.
	AllPermissions = PTY | PortForwarding | AgentForwarding | X11Forwarding | UserRC
)

var permissionNames = []struct {
	p         Permissions
	name, ext string
}{
	{PTY, "pty", "permit-pty"},
	{PortForwarding, "port-forwarding", "permit-port-forwarding"},
	{AgentForwarding, "agent-forwarding", "permit-agent-forwarding"},
	{X11Forwarding, "x11-forwarding", "permit-X11-forwarding"},
	{UserRC, "user-rc", "permit-user-rc"},
}

// ParsePermission returns the permission a policy file names, e.g. "pty".
func ParsePermission(name string) (Permissions, error) {
	for _, n := range permissionNames {
		if n.name == name {
			return n.p, nil
		}
	}
	return 0, fmt.Errorf("unknown permission %q (known: %s)", name, AllPermissions)
}

// Has reports whether every permission in q is in p.
func (p Permissions) Has(q Permissions) bool { return p&q == q }

// Names lists the permissions in policy-file spelling, in a fixed order.
func (p Permissions) Names() []string {
	names := []string{}
	for _, n := range permissionNames {
		if p&n.p != 0 {
			names = append(names, n.name)
		}
	}
	return names
}

// Extensions returns the OpenSSH certificate extensions for p, e.g.
// "permit-pty", each with an empty value as OpenSSH expects.
func (p Permissions) Extensions() map[string]string {
	ext := map[string]string{}
	for _, n := range permissionNames {
		if p&n.p != 0 {
			ext[n.ext] = ""
		}
	}
	return ext
}

// String lists the permissions separated by ", ", or "none".
func (p Permissions) String() string {
	if p == 0 {
		return "none"
	}
	return strings.Join(p.Names(), ", ")
}

// MarshalJSON encodes the set as a list of names.
func (p Permissions) MarshalJSON() ([]byte, error) { return json.Marshal(p.Names()) }

// UnmarshalJSON decodes a list of names.
func (p *Permissions) UnmarshalJSON(b []byte) error {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return err
	}
	var q Permissions
	for _, n := range names {
		v, err := ParsePermission(n)
		if err != nil {
			return err
		}
		q |= v
	}
	*p = q
	return nil
}

// FormatDuration writes d the way policy files do: "8h", "15m", "1h30m".
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Pos is a position in a policy file. Line and Col start at 1; zero means
// unknown.
type Pos struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Col  int    `json:"column"`
}

func (p Pos) String() string {
	file := p.File
	if file == "" {
		file = "<policy>"
	}
	switch {
	case p.Line == 0:
		return file
	case p.Col == 0:
		return fmt.Sprintf("%s:%d", file, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", file, p.Line, p.Col)
}

// Severity says whether a diagnostic makes the policy invalid.
type Severity int

// Severities of diagnostics.
const (
	SeverityError Severity = iota
	SeverityWarning
)

func (s Severity) String() string {
	if s == SeverityWarning {
		return "warning"
	}
	return "error"
}

// MarshalJSON encodes the severity as "error" or "warning".
func (s Severity) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// Diagnostic is one problem found in a policy file.
type Diagnostic struct {
	Pos               // where; encoded as "file", "line" and "column"
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
}

// String formats d as "file:line:col: message", with "warning: " before the
// message of a warning.
func (d Diagnostic) String() string {
	if d.Severity == SeverityWarning {
		return fmt.Sprintf("%s: warning: %s", d.Pos, d.Message)
	}
	return fmt.Sprintf("%s: %s", d.Pos, d.Message)
}

// ValidationError reports an invalid policy. Diagnostics holds every error
// and warning found, in file order.
type ValidationError struct {
	Diagnostics []Diagnostic
}

// Error lists the errors, one "file:line:col: message" per line.
func (e *ValidationError) Error() string {
	var lines []string
	for _, d := range e.Diagnostics {
		if d.Severity == SeverityError {
			lines = append(lines, d.String())
		}
	}
	return strings.Join(lines, "\n")
}

// Errors returns only the diagnostics that are errors.
func (e *ValidationError) Errors() []Diagnostic {
	var out []Diagnostic
	for _, d := range e.Diagnostics {
		if d.Severity == SeverityError {
			out = append(out, d)
		}
	}
	return out
}
