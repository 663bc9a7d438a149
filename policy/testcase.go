package policy

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Test is one policy test: an identity and the requests it must be allowed
// and denied, as kept under "tests:" in a policy file or in a file beside
// it.
type Test struct {
	Name string
	// User, ID and Teams describe a GitHub user; CI a workload instead.
	User  string
	ID    int64
	Teams []string
	CI    *CIClaims
	// Allow and Deny list "principal@host" requests.
	Allow []string
	Deny  []string
	// TTL, when set, is the certificate lifetime the identity must get.
	TTL time.Duration
	// Pos is where the test is defined.
	Pos Pos

	pos map[string]Pos // positions of the test's own keys, e.g. "allow[1]"
}

// Identity returns the identity the test describes.
func (t *Test) Identity() Identity {
	if t.CI != nil {
		c := *t.CI
		return Identity{CI: &c}
	}
	return Identity{Login: t.User, ID: t.ID, Teams: t.Teams}
}

func (t *Test) at(sub string) Pos {
	for {
		if pos, ok := t.pos[sub]; ok {
			return pos
		}
		i := strings.LastIndexAny(sub, ".[")
		if i < 0 {
			break
		}
		sub = sub[:i]
	}
	return t.Pos
}

// ParseTests reads a tests file kept beside a policy (a mapping with the
// single key "tests", in the same format as a policy's tests) and
// validates the tests against p. Errors are a *ValidationError.
func ParseTests(name string, data []byte, p *Policy) ([]Test, error) {
	d := newDecoder(name)
	var tests []Test
	if root := d.document(data); root != nil {
		d.mapping(root, "", "tests file", []field{
			{"tests", true, func(v *yaml.Node) {
				for i, t := range d.seq(v, "tests") {
					tests = append(tests, d.test(t, fmt.Sprintf("tests[%d]", i)))
				}
			}},
		})
	}
	if !d.failed() {
		v := &validator{p: p, idx: p.idx}
		if v.idx == nil {
			return nil, fmt.Errorf("policy %s has not been validated", p.File)
		}
		v.checkTests(tests)
		d.diags = append(d.diags, v.diags...)
	}
	if d.failed() {
		return nil, &ValidationError{Diagnostics: sortDiagnostics(d.diags)}
	}
	return tests, nil
}

// TestResult is the outcome of one test.
type TestResult struct {
	Name string `json:"name"`
	Pos  Pos    `json:"pos"`
	// Failures say, one per failed check, what happened and why: which
	// role allowed a request that should be denied, or why a request that
	// should be allowed was denied.
	Failures []string `json:"failures,omitempty"`
	// Checks is the number of requests and lifetimes checked.
	Checks int `json:"checks"`
}

// Passed reports whether every check of the test held.
func (r TestResult) Passed() bool { return len(r.Failures) == 0 }

// RunTest evaluates one test against the policy.
func (p *Policy) RunTest(t *Test) TestResult {
	res := TestResult{Name: t.Name, Pos: t.Pos}
	g := p.Grant(t.Identity())
	for _, req := range t.Allow {
		res.Checks++
		d := g.decide(req)
		if !d.Allow {
			res.Failures = append(res.Failures, fmt.Sprintf("%s: denied, want allowed: %s", req, d.Reason))
		}
	}
	for _, req := range t.Deny {
		res.Checks++
		d := g.decide(req)
		if d.Allow {
			res.Failures = append(res.Failures, fmt.Sprintf("%s: allowed, want denied: %s", req, d.Reason))
		}
	}
	if t.TTL != 0 {
		res.Checks++
		if got := g.TTL(); got != t.TTL {
			res.Failures = append(res.Failures, fmt.Sprintf("certificate ttl %s, want %s: %s", FormatDuration(got), FormatDuration(t.TTL), g.ttlReason()))
		}
	}
	return res
}

func (g *Grant) decide(req string) Decision {
	principal, host, err := ParseRequest(req)
	if err != nil {
		return Decision{Reason: err.Error()}
	}
	return g.Allows(principal, host)
}

// ttlReason says where the grant's lifetime comes from.
func (g *Grant) ttlReason() string {
	if len(g.matches) == 0 {
		return "no role applies"
	}
	var parts []string
	for _, m := range g.matches {
		parts = append(parts, fmt.Sprintf("%s %s", m.Name, FormatDuration(m.TTL)))
	}
	s := "the shortest of the matching roles: " + strings.Join(parts, ", ")
	if g.policy.Defaults.MaxTTL > 0 {
		s += fmt.Sprintf("; capped by defaults.max_ttl %s", FormatDuration(g.policy.Defaults.MaxTTL))
	}
	return s
}
