package policy

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// CIIdentityPrefix starts every CI identity string.
const CIIdentityPrefix = "github-actions:"

// The query keys of a CI identity string, one per claim.
const (
	ciKeyRepository  = "repository"
	ciKeyRef         = "ref"
	ciKeyEnvironment = "environment"
	ciKeyWorkflow    = "workflow"
)

// Upper bounds on claim lengths, far above what GitHub produces, so that a
// CI identity stays a reasonable store key.
const (
	maxCIRefLen         = 1024
	maxCIEnvironmentLen = 255
	maxCIWorkflowLen    = 1024
)

// ErrCIIdentity is wrapped by every error of ParseCIIdentity and
// CIClaims.Validate.
var ErrCIIdentity = errors.New("invalid CI identity")

// IdentityString is the identity under which certificates for these
// claims are recorded: "github-actions:" followed by the claims as a
// URL query with sorted keys, empty optional claims left out, e.g.
//
//	github-actions:environment=prod&ref=refs%2Fheads%2Fmain&repository=example%2Fsite
//
// Every claim is in it, workflow included, and each set of claims has
// exactly one string, which ParseCIIdentity turns back into the same
// claims. Call Validate first: the string of invalid claims does not
// parse.
func (c CIClaims) IdentityString() string {
	v := url.Values{}
	v.Set(ciKeyRepository, c.Repository)
	v.Set(ciKeyRef, c.Ref)
	if c.Environment != "" {
		v.Set(ciKeyEnvironment, c.Environment)
	}
	if c.Workflow != "" {
		v.Set(ciKeyWorkflow, c.Workflow)
	}
	return CIIdentityPrefix + v.Encode()
}

// ParseCIIdentity parses a string made by CIClaims.IdentityString. It
// accepts only that exact form: the prefix, each known key at most once,
// repository and ref present, no empty values, no other keys, and the
// canonical encoding (sorted keys, the escaping url.Values.Encode uses),
// so that one set of claims has one identity string. The claims must pass
// Validate. Errors wrap ErrCIIdentity.
func ParseCIIdentity(s string) (CIClaims, error) {
	rest, ok := strings.CutPrefix(s, CIIdentityPrefix)
	if !ok {
		return CIClaims{}, fmt.Errorf("%w: %.60q does not start with %q", ErrCIIdentity, s, CIIdentityPrefix)
	}
	v, err := url.ParseQuery(rest)
	if err != nil {
		return CIClaims{}, fmt.Errorf("%w: %.60q is not a query of claims", ErrCIIdentity, s)
	}
	for k, vs := range v {
		switch k {
		case ciKeyRepository, ciKeyRef, ciKeyEnvironment, ciKeyWorkflow:
		default:
			return CIClaims{}, fmt.Errorf("%w: unknown claim %.40q", ErrCIIdentity, k)
		}
		if len(vs) != 1 {
			return CIClaims{}, fmt.Errorf("%w: claim %s given %d times", ErrCIIdentity, k, len(vs))
		}
		if vs[0] == "" {
			return CIClaims{}, fmt.Errorf("%w: claim %s is empty", ErrCIIdentity, k)
		}
	}
	c := CIClaims{
		Repository:  v.Get(ciKeyRepository),
		Ref:         v.Get(ciKeyRef),
		Environment: v.Get(ciKeyEnvironment),
		Workflow:    v.Get(ciKeyWorkflow),
	}
	if err := c.Validate(); err != nil {
		return CIClaims{}, err
	}
	if c.IdentityString() != s {
		return CIClaims{}, fmt.Errorf("%w: %.60q is not in canonical form", ErrCIIdentity, s)
	}
	return c, nil
}

// Validate checks claims as GitHub issues them: repository "owner/name",
// ref a full git ref ("refs/heads/main", no wildcards), environment and
// workflow printable UTF-8 or empty. Errors wrap ErrCIIdentity.
func (c CIClaims) Validate() error {
	if err := validateRepository(c.Repository); err != nil {
		return fmt.Errorf("%w: %w", ErrCIIdentity, err)
	}
	if err := validateCIRef(c.Ref); err != nil {
		return fmt.Errorf("%w: %w", ErrCIIdentity, err)
	}
	if err := validateClaimText(ciKeyEnvironment, c.Environment, maxCIEnvironmentLen); err != nil {
		return fmt.Errorf("%w: %w", ErrCIIdentity, err)
	}
	if err := validateClaimText(ciKeyWorkflow, c.Workflow, maxCIWorkflowLen); err != nil {
		return fmt.Errorf("%w: %w", ErrCIIdentity, err)
	}
	return nil
}

// validateCIRef checks a ref claim: a full ref that git would accept, so
// in particular without the wildcards that policy ref patterns use.
func validateCIRef(s string) error {
	if len(s) > maxCIRefLen {
		return fmt.Errorf("ref %.40q... is longer than %d bytes", s, maxCIRefLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("ref %q is not UTF-8", s)
	}
	if !strings.HasPrefix(s, "refs/") || len(s) == len("refs/") {
		return fmt.Errorf("ref %q is not a full ref such as refs/heads/main", s)
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || strings.ContainsRune("~^:\\[*?", r) {
			return fmt.Errorf("ref %q contains %q, which git does not allow in a ref", s, r)
		}
	}
	if strings.Contains(s, "//") || strings.Contains(s, "..") || strings.Contains(s, "@{") || strings.HasSuffix(s, "/") || strings.HasSuffix(s, ".") {
		return fmt.Errorf("ref %q is not a ref git allows", s)
	}
	return nil
}

// validateClaimText checks an optional free-text claim.
func validateClaimText(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s %.40q... is longer than %d bytes", what, s, max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q is not UTF-8", what, s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("%s %q contains a control character", what, s)
		}
	}
	return nil
}
