package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/sallyport/sallyport/policy"
)

func runPolicyExplain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("policy explain", "FILE", `
Show how a policy treats one identity: which roles match and why, the
certificate it would get (principals and lifetime), every principal@host it
may use on which terms, and for each --request the decision with its
reason. Ends with the rules by which several matching roles combine.

The identity is a GitHub user (--user, with --team for each team they are
in) or a CI workload (--ci). Nothing is looked up on GitHub: the teams are
taken as given.`, stderr)
	user := fs.String("user", "", "GitHub `login` of the user to explain")
	id := fs.Int64("id", 0, "the user's numeric GitHub `ID` (shown only; policies name logins)")
	var teams, requests stringList
	fs.Var(&teams, "team", "`slug` of a team in the organisation the user is in; repeatable")
	ci := fs.String("ci", "", "explain a GitHub Actions workload instead of a user, by its OIDC `claims`: repository=OWNER/NAME,ref=REF[,environment=ENV][,workflow=NAME]")
	fs.Var(&requests, "request", "decide this `principal@host` request and give the reason; repeatable")
	format := fs.String("format", "text", "output `format`: text or json")
	files, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := checkFormat(*format, "text|json"); err != nil {
		return err
	}
	if len(files) != 1 {
		fs.Usage()
		return fmt.Errorf("policy explain: name exactly one policy file")
	}
	var ident policy.Identity
	switch {
	case *ci != "" && (*user != "" || len(teams) > 0 || *id != 0):
		return fmt.Errorf("policy explain: --ci describes a workload; it cannot be combined with --user, --id or --team")
	case *ci != "":
		claims, err := parseCIClaims(*ci)
		if err != nil {
			return err
		}
		ident.CI = claims
	case *user == "":
		fs.Usage()
		return fmt.Errorf("policy explain: give --user LOGIN (with --team SLUG for each team) or --ci")
	default:
		ident = policy.Identity{Login: *user, ID: *id, Teams: teams}
	}
	for _, r := range requests {
		if _, _, err := policy.ParseRequest(r); err != nil {
			return fmt.Errorf("--request: %v", err)
		}
	}
	p, err := loadPolicy(files[0])
	if err != nil {
		return reportInvalid(stderr, "text", err)
	}
	e := p.Explain(ident, requests...)
	if *format == "json" {
		return e.WriteJSON(stdout)
	}
	return e.WriteText(stdout)
}

// parseCIClaims parses "repository=R,ref=REF,environment=E,workflow=W".
func parseCIClaims(s string) (*policy.CIClaims, error) {
	c := &policy.CIClaims{}
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || v == "" {
			return nil, fmt.Errorf("--ci: %q is not key=value", kv)
		}
		if seen[k] {
			return nil, fmt.Errorf("--ci: %s given twice", k)
		}
		seen[k] = true
		switch k {
		case "repository":
			c.Repository = v
		case "ref":
			c.Ref = v
		case "environment":
			c.Environment = v
		case "workflow":
			c.Workflow = v
		default:
			return nil, fmt.Errorf("--ci: unknown claim %q (known: repository, ref, environment, workflow)", k)
		}
	}
	if c.Repository == "" || c.Ref == "" {
		return nil, fmt.Errorf("--ci: repository and ref are required, e.g. repository=example-oss/website,ref=refs/heads/main")
	}
	return c, nil
}
