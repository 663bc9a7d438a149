// Package config owns the server configuration file of `sallyport serve`:
// its YAML format, strict parsing with file:line errors, defaults, and
// validation. It reads secrets (the OAuth client secret, the organisation
// token, the webhook secret) only from files or environment variables named
// in the file, never from the file itself.
//
// The package only describes the configuration; cmd/sallyport turns it into
// explicit constructor arguments for the web server and the other parts, so
// no domain package imports it.
//
// There is deliberately no setting for the built-in GitHub stand-in of
// `sallyport dev`: an unknown key is an error, so no configuration file can
// enable it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the server configuration.
type Config struct {
	// File is the path the configuration was read from; relative paths in
	// it are resolved against its folder.
	File string `yaml:"-"`

	// Listen is the web server's TCP address; empty means ":8443" with TLS
	// and "127.0.0.1:8080" without (behind a reverse proxy on the same
	// machine).
	Listen string `yaml:"listen"`
	// BaseURL is the public URL users reach the server at, e.g.
	// "https://sallyport.example.org". Required. OAuth callbacks are built
	// from it and from nothing a request says. It must be https unless its
	// host is a loopback address.
	BaseURL string `yaml:"base_url"`
	// Bastion is the host:port users reach the bastion at, written into
	// the ssh_config and known_hosts lines the server hands out; empty
	// means the base URL's host name with bastion_listen's port (port 22
	// when bastion_listen is off).
	Bastion string `yaml:"bastion"`
	// Data is the data folder holding the CA keys and the database.
	// Required.
	Data string `yaml:"data"`
	// Policy is the policy file. Required. It is reloaded on SIGHUP and
	// when it changes on disk.
	Policy string `yaml:"policy"`
	// PolicyPoll is how often the policy file is checked for changes; zero
	// means every 2s.
	PolicyPoll time.Duration `yaml:"policy_poll"`

	// TLS, when set, makes the server speak HTTPS itself. Nil means plain
	// HTTP, for use behind a TLS-terminating reverse proxy.
	TLS *TLS `yaml:"tls"`
	// TrustedProxies are the addresses (CIDR prefixes or single IPs) of
	// reverse proxies whose X-Forwarded-For is believed. Empty means the
	// client address is the TCP peer's.
	TrustedProxies []string `yaml:"trusted_proxies"`

	// GitHub is the GitHub OAuth app people sign in with. Required.
	GitHub GitHub `yaml:"github"`
	// OIDC lists optional generic OpenID Connect providers.
	OIDC []OIDC `yaml:"oidc"`
	// Actions configures GitHub Actions OIDC tokens for CI certificates;
	// nil means /api/v1/ci/certificate is off.
	Actions *Actions `yaml:"actions"`

	// Sessions configures browser sessions.
	Sessions Sessions `yaml:"sessions"`
	// Limits are the request rate limits.
	Limits Limits `yaml:"limits"`
	// Trust configures the admins, signed policy and break-glass.
	Trust Trust `yaml:"trust"`

	// BastionServer configures the SSH bastion (bastion_listen,
	// bastion_names, bastion_host_key, bastion_limits).
	BastionServer `yaml:",inline"`

	trustedProxies []netip.Prefix
}

// TLS names the certificate and key files of the HTTPS listener.
type TLS struct {
	// CertFile is a PEM certificate chain. Required.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key. Required.
	KeyFile string `yaml:"key_file"`
}

// GitHub is the OAuth app and the API endpoints.
type GitHub struct {
	// ClientID of the OAuth app. Required.
	ClientID string `yaml:"client_id"`
	// ClientSecret says where the OAuth client secret is read from.
	// Required.
	ClientSecret Secret `yaml:"client_secret"`
	// WebURL is GitHub's web address (OAuth endpoints); empty means
	// https://github.com. Set it for GitHub Enterprise Server.
	WebURL string `yaml:"web_url"`
	// APIURL is GitHub's REST API address; empty means
	// https://api.github.com/.
	APIURL string `yaml:"api_url"`
	// OrgToken, when set, is a token with read:org used to refresh the
	// organisation's teams in the background; unset means membership is
	// read only at sign-in.
	OrgToken *Secret `yaml:"org_token"`
	// WebhookSecret, when set, turns on /webhooks/github for membership and
	// organization events; unset means no webhook endpoint.
	WebhookSecret *Secret `yaml:"webhook_secret"`
	// Refresh is how often the organisation directory is refreshed; zero
	// means every 5m, or every 1m when the bastion runs (so that team
	// changes end live sessions within a minute even without webhooks).
	Refresh time.Duration `yaml:"refresh"`
}

// OIDC is one generic OpenID Connect provider.
type OIDC struct {
	// Name identifies the provider in URLs and on the sign-in page: lower
	// case letters, digits and '-'. Required, unique.
	Name string `yaml:"name"`
	// Issuer is the issuer URL used for discovery. Required.
	Issuer string `yaml:"issuer"`
	// ClientID is required.
	ClientID string `yaml:"client_id"`
	// ClientSecret says where the client secret is read from. Required.
	ClientSecret Secret `yaml:"client_secret"`
	// GroupsClaim is the claim whose strings play the role of teams; empty
	// means "groups".
	GroupsClaim string `yaml:"groups_claim"`
}

// Actions configures GitHub Actions OIDC token verification.
type Actions struct {
	// Issuer is the token issuer; empty means
	// https://token.actions.githubusercontent.com.
	Issuer string `yaml:"issuer"`
	// Audience the tokens must carry. Required; usually the base URL.
	Audience string `yaml:"audience"`
	// MaxTTL caps CI certificate lifetimes below the policy's; zero means
	// 1h.
	MaxTTL time.Duration `yaml:"max_ttl"`
}

// Sessions configures browser sessions.
type Sessions struct {
	// TTL is how long a browser session lasts; zero means 12h.
	TTL time.Duration `yaml:"ttl"`
}

// Limits are rate limits per client address. Zero means the default shown.
type Limits struct {
	// SignInPerMinute is sign-in attempts per client address per minute
	// (default 20).
	SignInPerMinute int `yaml:"sign_in_per_minute"`
	// CertificatesPerMinute is certificate requests per client address per
	// minute (default 60).
	CertificatesPerMinute int `yaml:"certificates_per_minute"`
	// MaxRequestBytes bounds request bodies (default 64 KiB).
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
}

// Secret names where a secret is read from: exactly one of File and Env.
// A secret written into the configuration itself is refused.
type Secret struct {
	// File is a file holding the secret (surrounding whitespace trimmed).
	File string `yaml:"file"`
	// Env is an environment variable holding the secret.
	Env string `yaml:"env"`
}

// UnmarshalYAML refuses a plain string, which would be the secret itself.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return &lineError{line: n.Line, msg: "a secret is never written in the configuration: give {file: PATH} or {env: VARIABLE}"}
	}
	type plain Secret
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*s = Secret(p)
	return nil
}

// String never shows the secret, only where it comes from.
func (s Secret) String() string {
	if s.File != "" {
		return "file " + s.File
	}
	return "env " + s.Env
}

type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// Error is an invalid configuration: each problem as "file:line: message".
type Error struct {
	Problems []string
}

func (e *Error) Error() string { return strings.Join(e.Problems, "\n") }

// Load reads and validates the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

var unknownField = regexp.MustCompile(`^field (\S+) not found in type `)

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// Parse parses and validates a configuration; name is the file's path, used
// in messages and to resolve relative paths. Unknown keys, duplicate keys,
// wrong types and several documents are errors.
func Parse(name string, data []byte) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Problems: []string{name + ":1: empty configuration file"}}
		}
		return nil, &Error{Problems: yamlProblems(name, err)}
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return nil, &Error{Problems: []string{name + ": a configuration file holds exactly one YAML document"}}
	}
	c := &Config{File: name}
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(c); err != nil {
		return nil, &Error{Problems: yamlProblems(name, err)}
	}
	c.File = name
	v := &validator{file: name, root: &root}
	c.validate(v)
	if len(v.problems) > 0 {
		return nil, &Error{Problems: v.problems}
	}
	c.resolve()
	return c, nil
}

func yamlProblems(name string, err error) []string {
	var lines []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		lines = te.Errors
	} else {
		lines = []string{err.Error()}
	}
	var out []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if m := yamlLine.FindStringSubmatch(l); m != nil {
			msg := m[2]
			if f := unknownField.FindStringSubmatch(msg); f != nil {
				msg = fmt.Sprintf("unknown setting %q", f[1])
			}
			out = append(out, fmt.Sprintf("%s:%s: %s", name, m[1], msg))
			continue
		}
		out = append(out, fmt.Sprintf("%s: %s", name, strings.TrimPrefix(l, "yaml: ")))
	}
	return out
}

type validator struct {
	file     string
	root     *yaml.Node
	problems []string
}

// errorf records a problem at the line of the key path ("github.client_id");
// the line of the closest existing parent is used when the key is absent.
func (v *validator) errorf(path, format string, args ...any) {
	line := lineOf(v.root, path)
	v.problems = append(v.problems, fmt.Sprintf("%s:%d: %s", v.file, line, fmt.Sprintf(format, args...)))
}

// lineOf finds the line of a dotted key path, with "[i]" for list items.
func lineOf(root *yaml.Node, path string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, part := range strings.Split(path, ".") {
		key, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			key = part[:i]
			idx, _ = strconv.Atoi(strings.TrimSuffix(part[i+1:], "]"))
		}
		var next *yaml.Node
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == key {
					line = n.Content[i].Line
					next = n.Content[i+1]
				}
			}
		}
		if next == nil {
			return line
		}
		if idx >= 0 {
			if next.Kind != yaml.SequenceNode || idx >= len(next.Content) {
				return line
			}
			next = next.Content[idx]
			line = next.Line
		}
		n = next
	}
	return line
}

var oidcName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

func (c *Config) validate(v *validator) {
	if c.BaseURL == "" {
		v.errorf("base_url", "base_url is required (the public URL of this server)")
	} else if err := checkBaseURL(c.BaseURL); err != nil {
		v.errorf("base_url", "base_url: %v", err)
	}
	if c.Data == "" {
		v.errorf("data", "data is required (the data folder with the CA keys and database)")
	}
	if c.Policy == "" {
		v.errorf("policy", "policy is required (the policy file)")
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			v.errorf("listen", "listen %q: %v", c.Listen, err)
		}
	}
	if c.Bastion != "" {
		if _, _, err := net.SplitHostPort(c.Bastion); err != nil {
			v.errorf("bastion", "bastion %q: want host:port", c.Bastion)
		}
	}
	if c.PolicyPoll < 0 {
		v.errorf("policy_poll", "policy_poll must not be negative")
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		v.errorf("tls", "tls needs both cert_file and key_file")
	}
	for i, p := range c.TrustedProxies {
		pfx, err := parsePrefix(p)
		if err != nil {
			v.errorf(fmt.Sprintf("trusted_proxies[%d]", i), "trusted_proxies: %v", err)
			continue
		}
		c.trustedProxies = append(c.trustedProxies, pfx)
	}
	g := c.GitHub
	if g.ClientID == "" {
		v.errorf("github.client_id", "github.client_id is required")
	}
	v.secret("github.client_secret", &g.ClientSecret, true)
	v.secret("github.org_token", g.OrgToken, false)
	v.secret("github.webhook_secret", g.WebhookSecret, false)
	for _, u := range []struct{ key, val string }{{"github.web_url", g.WebURL}, {"github.api_url", g.APIURL}} {
		if u.val != "" {
			if err := checkHTTPURL(u.val); err != nil {
				v.errorf(u.key, "%s: %v", u.key, err)
			}
		}
	}
	if g.Refresh < 0 {
		v.errorf("github.refresh", "github.refresh must not be negative")
	}
	seen := map[string]bool{}
	for i, o := range c.OIDC {
		at := fmt.Sprintf("oidc[%d]", i)
		if !oidcName.MatchString(o.Name) {
			v.errorf(at+".name", "oidc name %q: use 1 to 32 lower-case letters, digits and '-'", o.Name)
		} else if seen[o.Name] {
			v.errorf(at+".name", "oidc name %q is used twice", o.Name)
		}
		seen[o.Name] = true
		if err := checkHTTPURL(o.Issuer); err != nil {
			v.errorf(at+".issuer", "oidc issuer: %v", err)
		}
		if o.ClientID == "" {
			v.errorf(at+".client_id", "oidc client_id is required")
		}
		v.secret(at+".client_secret", &c.OIDC[i].ClientSecret, true)
	}
	if a := c.Actions; a != nil {
		if a.Audience == "" {
			v.errorf("actions.audience", "actions.audience is required (usually the base_url)")
		}
		if a.Issuer != "" {
			if err := checkHTTPURL(a.Issuer); err != nil {
				v.errorf("actions.issuer", "actions.issuer: %v", err)
			}
		}
		if a.MaxTTL < 0 || a.MaxTTL > 24*time.Hour {
			v.errorf("actions.max_ttl", "actions.max_ttl must be between 0 and 24h")
		}
	}
	if c.Sessions.TTL < 0 || c.Sessions.TTL > 7*24*time.Hour {
		v.errorf("sessions.ttl", "sessions.ttl must be between 0 and 168h")
	}
	l := c.Limits
	if l.SignInPerMinute < 0 || l.CertificatesPerMinute < 0 || l.MaxRequestBytes < 0 {
		v.errorf("limits", "limits must not be negative")
	}
	c.validateBastion(v)
	c.validateTrust(v)
}

func (v *validator) secret(path string, s *Secret, required bool) {
	if s == nil || (s.File == "" && s.Env == "") {
		if required || s != nil {
			v.errorf(path, "%s: give {file: PATH} or {env: VARIABLE}", path)
		}
		return
	}
	if s.File != "" && s.Env != "" {
		v.errorf(path, "%s: give file or env, not both", path)
	}
}

func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q must not carry a query, fragment or user", s)
	}
	if u.Path != "" && u.Path != "/" {
		return fmt.Errorf("%q: serving under a path prefix is not supported", s)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%q: plain http is only allowed on a loopback address; use https", s)
	}
	return nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// resolve makes file paths absolute relative to the configuration's folder
// and fills in defaults.
func (c *Config) resolve() {
	dir := filepath.Dir(c.File)
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Data)
	abs(&c.Policy)
	c.resolveTrust()
	if c.TLS != nil {
		abs(&c.TLS.CertFile)
		abs(&c.TLS.KeyFile)
	}
	abs(&c.GitHub.ClientSecret.File)
	if c.GitHub.OrgToken != nil {
		abs(&c.GitHub.OrgToken.File)
	}
	if c.GitHub.WebhookSecret != nil {
		abs(&c.GitHub.WebhookSecret.File)
	}
	for i := range c.OIDC {
		abs(&c.OIDC[i].ClientSecret.File)
	}
	c.BaseURL = strings.TrimSuffix(c.BaseURL, "/")
	abs(&c.BastionHostKey)
	c.resolveBastion()
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
		if c.TLS != nil {
			c.Listen = ":8443"
		}
	}
	if c.PolicyPoll == 0 {
		c.PolicyPoll = 2 * time.Second
	}
	if c.GitHub.WebURL == "" {
		c.GitHub.WebURL = "https://github.com"
	}
	if c.GitHub.APIURL == "" {
		c.GitHub.APIURL = "https://api.github.com/"
	}
	if c.GitHub.Refresh == 0 {
		c.GitHub.Refresh = 5 * time.Minute
	}
	for i := range c.OIDC {
		if c.OIDC[i].GroupsClaim == "" {
			c.OIDC[i].GroupsClaim = "groups"
		}
	}
	if a := c.Actions; a != nil {
		if a.Issuer == "" {
			a.Issuer = "https://token.actions.githubusercontent.com"
		}
		if a.MaxTTL == 0 {
			a.MaxTTL = time.Hour
		}
	}
	if c.Sessions.TTL == 0 {
		c.Sessions.TTL = 12 * time.Hour
	}
	if c.Limits.SignInPerMinute == 0 {
		c.Limits.SignInPerMinute = 20
	}
	if c.Limits.CertificatesPerMinute == 0 {
		c.Limits.CertificatesPerMinute = 60
	}
	if c.Limits.MaxRequestBytes == 0 {
		c.Limits.MaxRequestBytes = 64 << 10
	}
}

// TrustedProxyPrefixes returns TrustedProxies parsed.
func (c *Config) TrustedProxyPrefixes() []netip.Prefix { return c.trustedProxies }
