package policy

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// MaxPrincipalLength is the longest principal accepted: 32 bytes, the user
// name limit of Linux useradd and of utmp records, so that every accepted
// principal can exist as an account on a target.
const MaxPrincipalLength = 32

// ValidatePrincipal checks a principal (a remote user name) as a certificate
// may carry it. OpenSSH matches principals literally and splits the
// AuthorizedPrincipals and certificate option syntax on commas and
// whitespace, and sshd's Match and ssh's user@host syntax give '*', '?',
// '@' and '%' special meaning; a leading '-' reads as an option to
// user-management commands. Rather than list every forbidden byte, the
// allowed set is the POSIX portable user name set: ASCII letters, digits,
// '.', '_' and '-', not starting with '-' or '.', at most
// MaxPrincipalLength bytes. This is the rule ca.ValidatePrincipal applies
// when issuing, so every principal a valid policy grants can be issued.
func ValidatePrincipal(s string) error {
	if s == "" {
		return fmt.Errorf("empty principal")
	}
	if len(s) > MaxPrincipalLength {
		return fmt.Errorf("principal %q is longer than %d bytes", s, MaxPrincipalLength)
	}
	if s[0] == '-' || s[0] == '.' {
		return fmt.Errorf("principal %q must not start with %q", s, s[0])
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlnum(c) || c == '.' || c == '_' || c == '-' {
			continue
		}
		switch {
		case c == '*' || c == '?':
			return fmt.Errorf("principal %q: wildcards are not allowed; list each user name", s)
		case c == '@':
			return fmt.Errorf("principal %q must not contain '@'; principals are user names, hosts are chosen by the hosts key", s)
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("principal %q contains a control character", s)
		case c == ' ' || c == '\t':
			return fmt.Errorf("principal %q contains whitespace", s)
		}
		return fmt.Errorf("principal %q contains %q; allowed are letters, digits, '.', '_' and '-'", s, rune(c))
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isLowerAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
}

// ValidateHostName checks a host name: one or more dot-separated labels of
// lower-case letters, digits and '-', each 1–63 bytes, not starting or
// ending with '-', at most 253 bytes in all. Lower case only, so that a
// name means one host however a user types it in a reviewer's view.
func ValidateHostName(s string) error {
	if s == "" {
		return fmt.Errorf("empty host name")
	}
	if len(s) > 253 {
		return fmt.Errorf("host name %q is longer than 253 bytes", s)
	}
	for _, label := range strings.Split(s, ".") {
		if err := validateLabel(label); err != nil {
			return fmt.Errorf("invalid host name %q: %v", s, err)
		}
	}
	return nil
}

func validateLabel(l string) error {
	if l == "" {
		return fmt.Errorf("empty label")
	}
	if len(l) > 63 {
		return fmt.Errorf("label longer than 63 bytes")
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fmt.Errorf("label %q starts or ends with '-'", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if 'A' <= c && c <= 'Z' {
			return fmt.Errorf("use lower case (%q)", strings.ToLower(l))
		}
		if !isLowerAlnum(c) && c != '-' {
			return fmt.Errorf("%q is not allowed; use letters, digits and '-'", rune(c))
		}
	}
	return nil
}

// ValidateHostLabel checks a host label used by "label:NAME" selectors:
// lower-case letters, digits, '-', '_' and '.', starting with a letter or
// digit, at most 63 bytes.
func ValidateHostLabel(s string) error {
	if s == "" {
		return fmt.Errorf("empty label")
	}
	if len(s) > 63 {
		return fmt.Errorf("label %q is longer than 63 bytes", s)
	}
	if !isLowerAlnum(s[0]) {
		return fmt.Errorf("label %q must start with a lower-case letter or digit", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLowerAlnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("label %q contains %q; use lower-case letters, digits, '-', '_' and '.'", s, rune(c))
		}
	}
	return nil
}

// ValidateAddress checks a host address: "host:port" with a numeric port
// 1–65535 and a DNS name or IP address (IPv6 in brackets).
func ValidateAddress(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if !strings.Contains(s, ":") {
			return fmt.Errorf("address %q has no port; write it as host:port, e.g. %s:22", s, s)
		}
		return fmt.Errorf("address %q is not host:port", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] == '0' {
		return fmt.Errorf("address %q: port %q is not a number from 1 to 65535", s, port)
	}
	if host == "" {
		return fmt.Errorf("address %q has no host", s)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return fmt.Errorf("address %q: IPv6 zones are not allowed", s)
		}
		return nil
	}
	if strings.Contains(host, ":") {
		return fmt.Errorf("address %q: invalid IP address %q", s, host)
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if err := ValidateHostName(name); err != nil {
		return fmt.Errorf("address %q: %v", s, err)
	}
	return nil
}

// validateLogin checks a GitHub login: letters, digits and single hyphens,
// not starting or ending with '-', at most 39 bytes. Bots such as
// "github-actions[bot]" cannot be role members.
func validateLogin(s string) error {
	if s == "" || len(s) > 39 {
		return fmt.Errorf("%q is not a GitHub login (1 to 39 letters, digits or '-')", s)
	}
	if s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return fmt.Errorf("%q is not a GitHub login: '-' only between letters or digits", s)
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && s[i] != '-' {
			return fmt.Errorf("%q is not a GitHub login: %q is not allowed", s, rune(s[i]))
		}
	}
	return nil
}

// validateTeamSlug checks a GitHub team slug: lower-case letters, digits,
// '-' and '_'. A team's display name ("Release Managers") is not its slug
// ("release-managers"); the API and the identity layer use the slug.
func validateTeamSlug(s string) error {
	if s == "" || len(s) > 100 {
		return fmt.Errorf("%q is not a GitHub team slug", s)
	}
	if strings.Contains(s, "/") {
		return fmt.Errorf("team %q: write the slug without the organisation; teams are always in github.org", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || c == ' ' {
			return fmt.Errorf("team %q: use the team's slug, e.g. %q", s, slugify(s))
		}
		if !isLowerAlnum(c) && c != '-' && c != '_' {
			return fmt.Errorf("team %q is not a team slug: %q is not allowed", s, rune(c))
		}
	}
	return nil
}

func slugify(s string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), " ", "-")
}

// validateRepository checks "owner/name".
func validateRepository(s string) error {
	owner, name, ok := strings.Cut(s, "/")
	if !ok || strings.Contains(name, "/") {
		return fmt.Errorf("repository %q must be owner/name", s)
	}
	if err := validateLogin(owner); err != nil {
		return fmt.Errorf("repository %q: owner %v", s, err)
	}
	if name == "" || len(name) > 100 || name == "." || name == ".." {
		return fmt.Errorf("repository %q: invalid name", s)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("repository %q: %q is not allowed in a repository name", s, rune(c))
		}
	}
	return nil
}

// validateRoleName checks a role or test name used in messages and diffs.
func validateRoleName(s string) error {
	if s == "" {
		return fmt.Errorf("empty role name")
	}
	if len(s) > 100 {
		return fmt.Errorf("role name %q is longer than 100 bytes", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("role name %q contains %q; use letters, digits, '-', '_' and '.'", s, rune(c))
		}
	}
	return nil
}

func validateText(what, s string) error {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s %q contains a control character", what, s)
		}
	}
	return nil
}
