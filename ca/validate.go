package ca

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Reasons a submitted public key is refused. Callers branch on them with
// errors.Is; the error text also names the key type.
var (
	ErrKeyIsCertificate = errors.New("a certificate was submitted where a plain public key is required")
	ErrKeyIsCA          = errors.New("the key is one of Sallyport's own CA keys")
	ErrKeyDSA           = errors.New("DSA keys are not accepted (obsolete and limited to 1024 bits)")
	ErrKeyRSATooShort   = errors.New("RSA keys shorter than 2048 bits are not accepted")
	ErrKeyUnsupported   = errors.New("unsupported key type")
)

// MinRSABits is the smallest RSA modulus accepted for subject keys.
const MinRSABits = 2048

// ParsePublicKey parses one public key in authorized_keys format, as found
// in an id_*.pub file: "type base64 [comment]". Options before the key,
// several keys, and certificates are refused.
func ParsePublicKey(data []byte) (ssh.PublicKey, error) {
	if len(data) > 16<<10 {
		return nil, fmt.Errorf("public key: %d bytes is too long for a public key", len(data))
	}
	var line []byte
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if line != nil {
			return nil, errors.New("public key: more than one key given")
		}
		line = []byte(l)
	}
	if line == nil {
		return nil, errors.New("public key: no key found")
	}
	if f := strings.Fields(string(line)); len(f) > 0 && (f[0] == "ssh-dss" || f[0] == "ssh-dss-cert-v01@openssh.com") {
		// x/crypto no longer parses DSA keys; name the reason rather than
		// report an unknown algorithm.
		return nil, fmt.Errorf("public key: %w", ErrKeyDSA)
	}
	pub, _, options, rest, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	if len(options) > 0 {
		return nil, errors.New("public key: authorized_keys options are not allowed")
	}
	if len(rest) > 0 {
		return nil, errors.New("public key: more than one key given")
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return nil, fmt.Errorf("public key: %w", ErrKeyIsCertificate)
	}
	return pub, nil
}

// checkSubjectKey reports whether pub may be certified: a plain key of an
// accepted type and strength, and not a CA key. FIDO (sk-) keys are accepted
// only where allowSK is set, for user certificates.
func checkSubjectKey(pub ssh.PublicKey, keys Keys, allowSK bool) error {
	if pub == nil {
		return errors.New("public key: missing")
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return fmt.Errorf("public key: %w", ErrKeyIsCertificate)
	}
	switch t := pub.Type(); t {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
	case ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256:
		if !allowSK {
			return fmt.Errorf("public key: %w: %s is a security-key type, not valid here", ErrKeyUnsupported, t)
		}
	case ssh.KeyAlgoRSA:
		cpk, ok := pub.(ssh.CryptoPublicKey)
		if !ok {
			return fmt.Errorf("public key: %w: %s", ErrKeyUnsupported, t)
		}
		rk, ok := cpk.CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("public key: %w: %s", ErrKeyUnsupported, t)
		}
		if bits := rk.N.BitLen(); bits < MinRSABits {
			return fmt.Errorf("public key: %w (this one has %d bits)", ErrKeyRSATooShort, bits)
		}
	case "ssh-dss":
		return fmt.Errorf("public key: %w", ErrKeyDSA)
	default:
		return fmt.Errorf("public key: %w: %q", ErrKeyUnsupported, t)
	}
	if k, ok := keys.isCAKey(pub); ok {
		return fmt.Errorf("public key: %w (the %s CA)", ErrKeyIsCA, k)
	}
	return nil
}

// MaxPrincipalLen is the longest principal accepted, matching the longest
// user name useradd allows.
const MaxPrincipalLen = 32

// ValidatePrincipal reports whether p is acceptable as a user certificate
// principal: a plain user name of letters, digits, '.', '_' and '-', not
// starting with '-' or '.', at most MaxPrincipalLen bytes. This rules out
// wildcards, commas, whitespace, control characters, '@' and '%'.
func ValidatePrincipal(p string) error {
	if p == "" {
		return errors.New("principal is empty")
	}
	if len(p) > MaxPrincipalLen {
		return fmt.Errorf("principal %.40q is longer than %d bytes", p, MaxPrincipalLen)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		case (c == '-' || c == '.') && i > 0:
		default:
			return fmt.Errorf("principal %q: character %q is not allowed in a user name", p, c)
		}
	}
	return nil
}

// ValidateHostname reports whether h is acceptable as a host certificate
// principal: a DNS name of letters, digits and '-' in dot-separated labels,
// or an IP address. Wildcards are refused.
func ValidateHostname(h string) error {
	if h == "" {
		return errors.New("host name is empty")
	}
	if len(h) > 253 {
		return fmt.Errorf("host name %.40q... is longer than 253 bytes", h)
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("host name %q: empty or overlong label", h)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host name %q: a label may not start or end with '-'", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("host name %q: character %q is not allowed", h, c)
			}
		}
	}
	return nil
}

// MaxKeyIDLen is the longest key ID accepted in a request.
const MaxKeyIDLen = 128

// ValidateKeyID reports whether id is acceptable as the identifying part of
// a certificate key ID: 1 to MaxKeyIDLen bytes of letters, digits, spaces and
// ._:@+=/- , not starting or ending with a space. No control characters can
// therefore reach sshd's logs through a key ID.
func ValidateKeyID(id string) error {
	if id == "" {
		return errors.New("key ID is empty")
	}
	if len(id) > MaxKeyIDLen {
		return fmt.Errorf("key ID %.40q... is longer than %d bytes", id, MaxKeyIDLen)
	}
	if id[0] == ' ' || id[len(id)-1] == ' ' {
		return fmt.Errorf("key ID %q starts or ends with a space", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(" ._:@+=/-", c) >= 0) {
			return fmt.Errorf("key ID %q: character %q is not allowed", id, c)
		}
	}
	return nil
}

// MaxForceCommandLen is the longest forced command accepted.
const MaxForceCommandLen = 4096

func validateForceCommand(cmd string) error {
	if len(cmd) > MaxForceCommandLen {
		return fmt.Errorf("force command is longer than %d bytes", MaxForceCommandLen)
	}
	if strings.TrimSpace(cmd) == "" {
		return errors.New("force command is blank")
	}
	for _, r := range cmd {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("force command %q contains a control character", cmd)
		}
	}
	return nil
}

// ParseSourceAddress parses a CIDR prefix or a single IP address (taken as a
// /32 or /128) for the source-address option. Prefixes with host bits set are
// refused, since they usually mean a typing mistake.
func ParseSourceAddress(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("source address %q: not an IP address or CIDR prefix", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("source address %q: zones are not allowed", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("source address %q: not a CIDR prefix", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("source address %q has host bits set (did you mean %s?)", s, p.Masked())
	}
	return p, nil
}
