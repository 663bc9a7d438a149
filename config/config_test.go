package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const minimal = `base_url: https://sallyport.example.org
data: /var/lib/sallyport
policy: policy.yaml
github:
  client_id: Iv1.abc
  client_secret: {file: /run/secrets/github}
`

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // a problem, "file:line: ..."; empty for ok
	}{
		{"ok/minimal", minimal, ""},
		{"ok/everything", minimal + `listen: 0.0.0.0:8443
bastion: bastion.example.org:2222
tls: {cert_file: c.pem, key_file: k.pem}
trusted_proxies: [10.0.0.0/8, 192.0.2.1]
oidc:
  - name: keycloak
    issuer: https://id.example.org/realms/oss
    client_id: sallyport
    client_secret: {env: KEYCLOAK_SECRET}
actions: {audience: https://sallyport.example.org, max_ttl: 30m}
sessions: {ttl: 8h}
limits: {sign_in_per_minute: 10, certificates_per_minute: 30}
`, ""},
		{"fail/unknown-key", minimal + "colour: blue\n", "cfg.yaml:7: unknown setting \"colour\""},
		{"fail/unknown-nested-key", strings.Replace(minimal, "  client_id: Iv1.abc\n", "  client_id: Iv1.abc\n  client_sekret: x\n", 1), "cfg.yaml:6: unknown setting \"client_sekret\""},
		{"fail/secret-inline", strings.Replace(minimal, "{file: /run/secrets/github}", "hunter2", 1), "cfg.yaml:6: a secret is never written in the configuration"},
		{"fail/secret-both", strings.Replace(minimal, "{file: /run/secrets/github}", "{file: /x, env: Y}", 1), "cfg.yaml:6: github.client_secret: give file or env, not both"},
		{"fail/no-secret", strings.Replace(minimal, "  client_secret: {file: /run/secrets/github}\n", "", 1), "github.client_secret: give {file: PATH} or {env: VARIABLE}"},
		{"fail/no-base-url", strings.Replace(minimal, "base_url: https://sallyport.example.org\n", "", 1), "base_url is required"},
		{"fail/http-public", strings.Replace(minimal, "https://sallyport.example.org", "http://sallyport.example.org", 1), "cfg.yaml:1: base_url"},
		{"fail/base-url-path", strings.Replace(minimal, "https://sallyport.example.org", "https://example.org/sallyport", 1), "path prefix"},
		{"fail/bastion-without-port", minimal + "bastion: bastion.example.org\n", "cfg.yaml:7: bastion"},
		{"fail/bad-proxy", minimal + "trusted_proxies: [not-an-ip]\n", "cfg.yaml:7: trusted_proxies"},
		{"fail/syntax", minimal + "github: [\n", "cfg.yaml:"},
		{"fail/duplicate-key", minimal + "data: /other\n", "already defined"},
		{"fail/two-documents", minimal + "---\n" + minimal, "exactly one YAML document"},
		{"fail/negative-ttl", minimal + "sessions: {ttl: -1h}\n", "sessions.ttl"},
		{"fail/empty", "", "empty configuration file"},
		// Nothing of `sallyport dev` can be switched on by a configuration.
		{"fail/dev-mode", minimal + "dev: true\n", "unknown setting \"dev\""},
		{"fail/stand-in", strings.Replace(minimal, "  client_id: Iv1.abc\n", "  client_id: Iv1.abc\n  standin: true\n", 1), "unknown setting \"standin\""},
		{"fail/demo-users", minimal + "demo_users: [alice]\n", "unknown setting \"demo_users\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("cfg.yaml", []byte(tc.yaml))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if c.Policy != filepath.Join(".", "policy.yaml") && c.Policy != "policy.yaml" {
					t.Errorf("policy = %q; want it resolved beside the config", c.Policy)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v; want a *config.Error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q; want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("/etc/sallyport/sallyport.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Policy != "/etc/sallyport/policy.yaml" {
		t.Errorf("policy = %q; want it resolved beside the config", c.Policy)
	}
	if c.Listen != "127.0.0.1:8080" || c.Sessions.TTL != 12*time.Hour || c.GitHub.WebURL != "https://github.com" ||
		c.Limits.SignInPerMinute != 20 || c.PolicyPoll != 2*time.Second {
		t.Errorf("defaults not applied: %+v", c)
	}
	if s := c.GitHub.ClientSecret.String(); s != "file /run/secrets/github" {
		t.Errorf("secret shows as %q", s)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte("github: {client_secret: x}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		Parse("fuzz.yaml", data) //nolint:errcheck // must not panic
	})
}
