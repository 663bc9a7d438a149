package policy

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// HostKey is a target's public host key pinned in the policy, so that the
// bastion can reach a server that has no host certificate from the host
// CA. It is never trusted on first use: the bastion accepts a plain host
// key only when it is byte for byte one pinned for that host.
//
// ParseHostKey is the only way to make one, so every HostKey is a valid
// ed25519, ECDSA (nistp256, nistp384, nistp521) or RSA key of at least
// MinRSAHostKeyBits. The zero value pins nothing and fails Validate.
type HostKey struct {
	typ     string // key type as in the key data, e.g. "ssh-ed25519"
	blob    []byte // SSH wire format, canonical
	bits    int
	comment string
}

// Host key types the policy pins.
const (
	HostKeyED25519  = "ssh-ed25519"
	HostKeyECDSA256 = "ecdsa-sha2-nistp256"
	HostKeyECDSA384 = "ecdsa-sha2-nistp384"
	HostKeyECDSA521 = "ecdsa-sha2-nistp521"
	HostKeyRSA      = "ssh-rsa"
)

// MinRSAHostKeyBits is the shortest RSA host key a policy may pin.
const MinRSAHostKeyBits = 2048

// maxRSAHostKeyBits is the longest RSA key OpenSSH accepts.
const maxRSAHostKeyBits = 16384

// Kinds of invalid host keys, for errors.Is on ParseHostKey's errors.
var (
	errHostKeySyntax      = errors.New("not an OpenSSH public key")
	errHostKeyCertificate = errors.New("certificate instead of a plain key")
	errHostKeyDSA         = errors.New("DSA key")
	errHostKeyWeak        = errors.New("RSA key too short")
	errHostKeyUnsupported = errors.New("unsupported key type")
)

// hostKeyError is a message for people with a kind for errors.Is.
type hostKeyError struct {
	kind error
	msg  string
}

func (e *hostKeyError) Error() string { return e.msg }
func (e *hostKeyError) Unwrap() error { return e.kind }

func hostKeyErr(kind error, format string, args ...any) error {
	return &hostKeyError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

const hostKeyExample = `"ssh-ed25519 AAAAC3Nza... comment" (the target's /etc/ssh/ssh_host_ed25519_key.pub)`

// ParseHostKey reads a public key in OpenSSH's authorized_keys form without
// options: "TYPE BASE64 [comment]", as in /etc/ssh/ssh_host_*_key.pub.
// It refuses certificates (pin the plain key; certificates are trusted only
// from the host CA), DSA keys, RSA keys shorter than MinRSAHostKeyBits,
// security-key types and anything OpenSSH would not parse.
func ParseHostKey(s string) (HostKey, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return HostKey{}, hostKeyErr(errHostKeySyntax, "host key is empty; want an OpenSSH public key such as %s", hostKeyExample)
	}
	typ := fields[0]
	if !knownKeyType(typ) {
		switch {
		case typ == "@cert-authority":
			return HostKey{}, hostKeyErr(errHostKeyCertificate, "host key is a known_hosts @cert-authority line: targets' host certificates are trusted only from Sallyport's host CA; pin the target's own plain host key instead")
		case len(fields) > 2 && knownKeyType(fields[1]):
			return HostKey{}, hostKeyErr(errHostKeySyntax, "host key starts with %q, not a key type: pin the key alone, without the host names of a known_hosts or ssh-keyscan line or the options of an authorized_keys line", clip(typ))
		}
		return HostKey{}, hostKeyErr(errHostKeySyntax, "host key %q is not an OpenSSH public key; want one such as %s", clip(s), hostKeyExample)
	}
	if isCertType(typ) {
		return HostKey{}, hostKeyErr(errHostKeyCertificate, "host key is a certificate (%s): pin the target's plain host key instead; host certificates are trusted only from Sallyport's host CA", typ)
	}
	if len(fields) < 2 {
		return HostKey{}, hostKeyErr(errHostKeySyntax, "%s host key has no key data; want an OpenSSH public key such as %s", typ, hostKeyExample)
	}
	blob, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		return HostKey{}, hostKeyErr(errHostKeySyntax, "%s host key: the key data is not valid base64", typ)
	}
	k := HostKey{typ: typ, blob: blob, comment: strings.Join(fields[2:], " ")}
	r := wireReader(blob)
	name, ok := r.string()
	if !ok {
		return HostKey{}, hostKeyErr(errHostKeySyntax, "%s host key: the key data is not an SSH public key", typ)
	}
	if string(name) != typ {
		return HostKey{}, hostKeyErr(errHostKeySyntax, "host key says %s but its key data is %q", typ, clip(string(name)))
	}
	if k.bits, err = parseKeyData(typ, r); err != nil {
		return HostKey{}, err
	}
	if err := validateText("host key comment", k.comment); err != nil {
		return HostKey{}, hostKeyErr(errHostKeySyntax, "%v", err)
	}
	return k, nil
}

// parseKeyData checks the key data after the type name as strictly as
// golang.org/x/crypto/ssh (which the bastion compares keys with) and
// OpenSSH, and requires the canonical encoding: a target presenting the
// key is compared byte for byte with it. It returns the key's size in bits.
func parseKeyData(typ string, r wireReader) (int, error) {
	malformed := func(why string) error {
		return hostKeyErr(errHostKeySyntax, "%s host key: malformed key data (%s)", typ, why)
	}
	var bits int
	switch typ {
	case HostKeyED25519:
		k, ok := r.string()
		if !ok {
			return 0, malformed("truncated")
		}
		if len(k) != 32 {
			return 0, malformed(fmt.Sprintf("%d bytes of key; want 32", len(k)))
		}
		bits = 256
	case HostKeyECDSA256, HostKeyECDSA384, HostKeyECDSA521:
		curve, ok := r.string()
		if !ok {
			return 0, malformed("truncated")
		}
		if "ecdsa-sha2-"+string(curve) != typ {
			return 0, malformed(fmt.Sprintf("curve %q", clip(string(curve))))
		}
		point, ok := r.string()
		if !ok {
			return 0, malformed("truncated")
		}
		c, n := ecdh.P256(), 256
		switch typ {
		case HostKeyECDSA384:
			c, n = ecdh.P384(), 384
		case HostKeyECDSA521:
			c, n = ecdh.P521(), 521
		}
		if _, err := c.NewPublicKey(point); err != nil {
			return 0, malformed("not a point on the curve")
		}
		bits = n
	case HostKeyRSA:
		e, ok := r.mpint()
		if !ok {
			return 0, malformed("bad exponent")
		}
		n, ok := r.mpint()
		if !ok {
			return 0, malformed("bad modulus")
		}
		if e.BitLen() > 24 || e.Int64() < 3 || e.Bit(0) == 0 {
			return 0, malformed("exponent out of range")
		}
		bits = n.BitLen()
		if bits > maxRSAHostKeyBits {
			return 0, hostKeyErr(errHostKeyUnsupported, "RSA host key has %d bits, more than the %d OpenSSH accepts", bits, maxRSAHostKeyBits)
		}
		if bits < MinRSAHostKeyBits {
			return 0, hostKeyErr(errHostKeyWeak, "RSA host key has %d bits; pin one of at least %d bits (or the target's ed25519 key)", bits, MinRSAHostKeyBits)
		}
	case "ssh-dss":
		return 0, hostKeyErr(errHostKeyDSA, "host key is DSA (ssh-dss), which is too weak and disabled in OpenSSH; pin the target's ed25519, ECDSA or RSA host key")
	default:
		if strings.HasPrefix(typ, "sk-") {
			return 0, hostKeyErr(errHostKeyUnsupported, "host key type %s is a security-key type, which no SSH server uses as a host key", typ)
		}
		return 0, hostKeyErr(errHostKeyUnsupported, "unsupported host key type %s; want %s, %s, %s, %s or %s", typ, HostKeyED25519, HostKeyECDSA256, HostKeyECDSA384, HostKeyECDSA521, HostKeyRSA)
	}
	if len(r) != 0 {
		return 0, malformed("trailing data")
	}
	return bits, nil
}

// knownKeyType reports whether s names an OpenSSH key or certificate type,
// pinnable or not, so that messages can say what is wrong with it.
func knownKeyType(s string) bool {
	switch strings.TrimSuffix(s, "-cert-v01@openssh.com") {
	case HostKeyED25519, HostKeyECDSA256, HostKeyECDSA384, HostKeyECDSA521, HostKeyRSA, "ssh-dss",
		"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
		"rsa-sha2-256", "rsa-sha2-512":
		return true
	}
	return false
}

func isCertType(s string) bool { return strings.HasSuffix(s, "-cert-v01@openssh.com") }

// clip shortens s for a message.
func clip(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// wireReader reads SSH wire-format values (RFC 4251 section 5).
type wireReader []byte

func (r *wireReader) string() ([]byte, bool) {
	if len(*r) < 4 {
		return nil, false
	}
	n := binary.BigEndian.Uint32(*r)
	if uint64(n) > uint64(len(*r)-4) {
		return nil, false
	}
	s := (*r)[4 : 4+n]
	*r = (*r)[4+n:]
	return s, true
}

// mpint reads a positive multiple-precision integer in its one canonical
// encoding: no needless leading zero byte, not negative, not zero.
func (r *wireReader) mpint() (*big.Int, bool) {
	b, ok := r.string()
	if !ok || len(b) == 0 || b[0]&0x80 != 0 || (b[0] == 0 && (len(b) == 1 || b[1]&0x80 == 0)) {
		return nil, false
	}
	return new(big.Int).SetBytes(b), true
}

// Type is the key type, e.g. "ssh-ed25519" or "ssh-rsa".
func (k HostKey) Type() string { return k.typ }

// Marshal returns the key in SSH wire format, as a target presents it and
// as golang.org/x/crypto/ssh's PublicKey.Marshal returns it.
func (k HostKey) Marshal() []byte { return bytes.Clone(k.blob) }

// Bits is the key's size: 256 for ed25519, the curve's size for ECDSA, the
// modulus length for RSA.
func (k HostKey) Bits() int { return k.bits }

// Comment is the text after the key data, if any. It plays no part in
// comparing keys.
func (k HostKey) Comment() string { return k.comment }

// IsZero reports whether k is the zero HostKey, which pins nothing.
func (k HostKey) IsZero() bool { return len(k.blob) == 0 }

// Equal reports whether k and o are the same key, comments aside.
func (k HostKey) Equal(o HostKey) bool { return bytes.Equal(k.blob, o.blob) }

// Fingerprint is the key's SHA-256 fingerprint as OpenSSH prints it
// (ssh-keygen -l), e.g. "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8".
func (k HostKey) Fingerprint() string {
	sum := sha256.Sum256(k.blob)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// String names the key for people: type and fingerprint, e.g.
// "ssh-ed25519 SHA256:nThbg6...".
func (k HostKey) String() string {
	if k.IsZero() {
		return "(no key)"
	}
	return k.typ + " " + k.Fingerprint()
}

// AuthorizedKey returns the key in the form ParseHostKey reads, with its
// comment.
func (k HostKey) AuthorizedKey() string {
	s := k.typ + " " + base64.StdEncoding.EncodeToString(k.blob)
	if k.comment != "" {
		s += " " + k.comment
	}
	return s
}

// MarshalText encodes the key as AuthorizedKey does, so that JSON shows
// it as written in the policy; the zero HostKey encodes as "".
func (k HostKey) MarshalText() ([]byte, error) {
	if k.IsZero() {
		return []byte{}, nil
	}
	return []byte(k.AuthorizedKey()), nil
}

// UnmarshalText parses the key with ParseHostKey.
func (k *HostKey) UnmarshalText(b []byte) error {
	v, err := ParseHostKey(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}
