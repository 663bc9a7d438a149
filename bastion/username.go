package bastion

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sallyport/sallyport/ca"
)

// MaxUserLen bounds the SSH user name the bastion parses: a login of at
// most ca.MaxPrincipalLen bytes, '@', and a host name of at most 253.
const MaxUserLen = ca.MaxPrincipalLen + 1 + 253

// ErrBadUser is wrapped by every ParseUser error.
var ErrBadUser = errors.New("invalid user name")

// ParseUser splits the SSH user name a client sent into the login on the
// target and the target host: "root@web1" is login "root" on host "web1";
// "root" alone names no host (host is ""), as on a ProxyJump connection.
//
// The user name is untrusted input. Control characters, '%', more than one
// '@', option-like text (a leading '-'), anything ca.ValidatePrincipal
// refuses in the login or ca.ValidateHostname refuses in the host, IP
// addresses as hosts (policy hosts have names), and names longer than
// MaxUserLen are refused with an error wrapping ErrBadUser. The host is
// returned in lower case, as policy host names are written.
func ParseUser(user string) (login, host string, err error) {
	if len(user) > MaxUserLen {
		return "", "", fmt.Errorf("%w: %d bytes is longer than %d", ErrBadUser, len(user), MaxUserLen)
	}
	for i := 0; i < len(user); i++ {
		if c := user[i]; c < 0x20 || c >= 0x7f {
			return "", "", fmt.Errorf("%w: %q contains a control or non-ASCII character", ErrBadUser, user)
		}
	}
	if strings.ContainsRune(user, '%') {
		return "", "", fmt.Errorf("%w: %q contains '%%'", ErrBadUser, user)
	}
	login, host, hasHost := strings.Cut(user, "@")
	if strings.ContainsRune(host, '@') {
		return "", "", fmt.Errorf("%w: %q has more than one '@' (write login@host)", ErrBadUser, user)
	}
	if strings.HasPrefix(login, "-") || strings.HasPrefix(host, "-") {
		return "", "", fmt.Errorf("%w: %q looks like an option", ErrBadUser, user)
	}
	if err := ca.ValidatePrincipal(login); err != nil {
		return "", "", fmt.Errorf("%w: login: %w", ErrBadUser, err)
	}
	if !hasHost {
		return login, "", nil
	}
	host, err = ParseHost(host)
	if err != nil {
		return "", "", err
	}
	return login, host, nil
}

// ParseHost checks a target host name as a client sent it, in a user name
// or a ProxyJump direct-tcpip request, and returns it in lower case. The
// rules are those of ParseUser.
func ParseHost(host string) (string, error) {
	if host == "" {
		return "", fmt.Errorf("%w: empty host name", ErrBadUser)
	}
	if len(host) > 253 {
		return "", fmt.Errorf("%w: host name of %d bytes is longer than 253", ErrBadUser, len(host))
	}
	if err := ca.ValidateHostname(host); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadUser, err)
	}
	// ValidateHostname accepts IP addresses, which policy host names never
	// are; a name of digits and dots only is refused too.
	if strings.Trim(host, "0123456789.") == "" || strings.ContainsRune(host, ':') {
		return "", fmt.Errorf("%w: %q: name the host as the policy does, not by address", ErrBadUser, host)
	}
	return strings.ToLower(host), nil
}
