package trust

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sallyport/sallyport/ca"
)

// Break-glass limits.
const (
	// MaxBreakGlassTTL is the longest break-glass certificate.
	MaxBreakGlassTTL = time.Hour
	// MaxRequestAge is how long after its creation a signed request is
	// accepted.
	MaxRequestAge = 15 * time.Minute
	// BreakGlassPurpose is the first line's value in a break-glass
	// request; it names what the signature authorises.
	BreakGlassPurpose = "sallyport-breakglass-v1"
	maxReasonLen      = 500
	maxRequestSize    = 16 << 10
)

// ErrRefused wraps every reason a signed request is refused.
var ErrRefused = errors.New("signed request refused")

// Request is a break-glass request: the text an admin clear-signs with
// `gpg --clearsign`. Its canonical form (Marshal) is
//
//	purpose: sallyport-breakglass-v1
//	id: 32 hexadecimal digits, random
//	created: RFC 3339 UTC time, whole seconds
//	principal: the user name on the target
//	host: the target
//	ttl: certificate lifetime, at most 1h
//	reason: why, in plain words
//	key: the SSH public key to certify, without comment
//
// ParseRequest accepts exactly this form and nothing else, so the text
// the admin reads is the text that is enforced.
type Request struct {
	ID        string
	Created   time.Time
	Principal string
	Host      string
	TTL       time.Duration
	Reason    string
	Key       ssh.PublicKey
}

// NewRequest returns a request with a fresh random ID created at now.
func NewRequest(principal, host, reason string, ttl time.Duration, key ssh.PublicKey, now time.Time) (Request, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Request{}, err
	}
	r := Request{
		ID: hex.EncodeToString(id[:]), Created: now.UTC().Truncate(time.Second),
		Principal: principal, Host: host, TTL: ttl, Reason: reason, Key: key,
	}
	if err := r.Validate(); err != nil {
		return Request{}, err
	}
	return r, nil
}

// Validate checks every field.
func (r Request) Validate() error {
	if len(r.ID) != 32 || strings.Trim(r.ID, "0123456789abcdef") != "" {
		return fmt.Errorf("request id %q: want 32 lower-case hexadecimal digits", r.ID)
	}
	if r.Created.IsZero() || r.Created.Location() != time.UTC || !r.Created.Equal(r.Created.Truncate(time.Second)) {
		return errors.New("request created time must be UTC in whole seconds")
	}
	if err := ca.ValidatePrincipal(r.Principal); err != nil {
		return fmt.Errorf("request principal: %w", err)
	}
	if err := ca.ValidateHostname(r.Host); err != nil {
		return fmt.Errorf("request host: %w", err)
	}
	if r.TTL <= 0 || r.TTL > MaxBreakGlassTTL || r.TTL%time.Second != 0 {
		return fmt.Errorf("request ttl %s: want whole seconds, more than 0 and at most %s", r.TTL, MaxBreakGlassTTL)
	}
	if strings.TrimSpace(r.Reason) == "" {
		return errors.New("request reason is empty")
	}
	if len(r.Reason) > maxReasonLen || !utf8.ValidString(r.Reason) || r.Reason != strings.TrimSpace(r.Reason) {
		return fmt.Errorf("request reason: at most %d bytes of UTF-8 without surrounding spaces", maxReasonLen)
	}
	for _, c := range r.Reason {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == '\u2028' || c == '\u2029' {
			return fmt.Errorf("request reason: control character %U", c)
		}
	}
	if r.Key == nil {
		return errors.New("request has no key")
	}
	if _, ok := r.Key.(*ssh.Certificate); ok {
		return errors.New("request key is a certificate")
	}
	return nil
}

var requestFields = []string{"purpose", "id", "created", "principal", "host", "ttl", "reason", "key"}

// Marshal returns the canonical text of r, ending in a newline.
func (r Request) Marshal() []byte {
	values := []string{
		BreakGlassPurpose, r.ID, r.Created.UTC().Format(time.RFC3339), r.Principal, r.Host,
		r.TTL.String(), r.Reason, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(r.Key))),
	}
	var b bytes.Buffer
	for i, f := range requestFields {
		b.WriteString(f + ": " + values[i] + "\n")
	}
	return b.Bytes()
}

// ParseRequest parses the canonical text of a request. Anything but the
// exact canonical form, with the break-glass purpose, is refused.
func ParseRequest(text []byte) (Request, error) {
	if len(text) > maxRequestSize {
		return Request{}, fmt.Errorf("request larger than %d bytes", maxRequestSize)
	}
	if !utf8.Valid(text) {
		return Request{}, errors.New("request is not UTF-8")
	}
	lines := strings.Split(string(text), "\n")
	if len(lines) != len(requestFields)+1 || lines[len(lines)-1] != "" {
		return Request{}, fmt.Errorf("request has %d lines; want exactly %d, each ending in a newline", len(lines)-1, len(requestFields))
	}
	values := map[string]string{}
	for i, f := range requestFields {
		v, ok := strings.CutPrefix(lines[i], f+": ")
		if !ok {
			return Request{}, fmt.Errorf("request line %d: want %q", i+1, f+": ...")
		}
		values[f] = v
	}
	if values["purpose"] != BreakGlassPurpose {
		return Request{}, fmt.Errorf("request purpose %q; want %q (a signature over another kind of document does not count)", values["purpose"], BreakGlassPurpose)
	}
	var r Request
	var err error
	r.ID = values["id"]
	if r.Created, err = time.Parse(time.RFC3339, values["created"]); err != nil {
		return Request{}, fmt.Errorf("request created: %w", err)
	}
	r.Created = r.Created.UTC()
	r.Principal, r.Host, r.Reason = values["principal"], values["host"], values["reason"]
	if r.TTL, err = time.ParseDuration(values["ttl"]); err != nil {
		return Request{}, fmt.Errorf("request ttl: %w", err)
	}
	if r.Key, err = ca.ParsePublicKey([]byte(values["key"])); err != nil {
		return Request{}, fmt.Errorf("request key: %w", err)
	}
	if err := r.Validate(); err != nil {
		return Request{}, err
	}
	if !bytes.Equal(r.Marshal(), text) {
		return Request{}, errors.New("request is not in canonical form (was it edited by hand?)")
	}
	return r, nil
}

// ClearSigned is a parsed clear-signed document.
type ClearSigned struct {
	// Text is the signed text, lines ending in "\n", trailing spaces and
	// tabs removed as the signature hashes it.
	Text []byte
	// hashed is the text as a text-mode signature hashes it.
	hashed []byte
	sigs   []*packet.Signature
}

const (
	clearBegin = "-----BEGIN PGP SIGNED MESSAGE-----"
	sigBegin   = "-----BEGIN PGP SIGNATURE-----"
	sigEnd     = "-----END PGP SIGNATURE-----"
)

// ParseClearSigned strictly parses a clear-signed document as `gpg
// --clearsign` writes it. It refuses text before the BEGIN line or after
// the signature, any armor header but "Hash:", lines starting with '-' that
// are not dash-escaped, and any signature block holding other packets.
func ParseClearSigned(data []byte) (*ClearSigned, error) {
	if len(data) > maxRequestSize+maxKeyFileSize {
		return nil, errors.New("clear-signed document too large")
	}
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	if strings.ContainsRune(s, '\r') {
		return nil, errors.New("clear-signed document has a bare carriage return")
	}
	lines := strings.Split(s, "\n")
	if len(lines) == 0 || lines[0] != clearBegin {
		return nil, fmt.Errorf("document does not start with %q (nothing may come before it)", clearBegin)
	}
	i := 1
	for ; i < len(lines) && lines[i] != ""; i++ {
		v, ok := strings.CutPrefix(lines[i], "Hash: ")
		if !ok {
			return nil, fmt.Errorf("armor header %q: only \"Hash:\" headers are allowed in a clear-signed request", lines[i])
		}
		for _, h := range strings.Split(v, ",") {
			switch strings.TrimSpace(h) {
			case "SHA224", "SHA256", "SHA384", "SHA512", "SHA3-256", "SHA3-512":
			default:
				return nil, fmt.Errorf("armor header %q: hash not accepted", lines[i])
			}
		}
	}
	if i >= len(lines) {
		return nil, errors.New("clear-signed document has no text")
	}
	i++ // the blank line
	var text []string
	for ; i < len(lines) && lines[i] != sigBegin; i++ {
		l := lines[i]
		if strings.HasPrefix(l, "-") {
			unescaped, ok := strings.CutPrefix(l, "- ")
			if !ok {
				return nil, fmt.Errorf("line %q starts with '-' but is not dash-escaped", l)
			}
			l = unescaped
		}
		text = append(text, strings.TrimRight(l, " \t"))
	}
	if i >= len(lines) {
		return nil, fmt.Errorf("no %q line", sigBegin)
	}
	start := i
	for ; i < len(lines) && lines[i] != sigEnd; i++ {
	}
	if i >= len(lines) {
		return nil, fmt.Errorf("no %q line", sigEnd)
	}
	for _, l := range lines[i+1:] {
		if strings.TrimSpace(l) != "" {
			return nil, errors.New("text after the signature")
		}
	}
	block := strings.Join(lines[start:i+1], "\n") + "\n"
	for _, l := range lines[start+1 : i] {
		if l == "" {
			break
		}
		if strings.Contains(l, ": ") && !strings.HasPrefix(l, "Comment: ") && !strings.HasPrefix(l, "Version: ") {
			return nil, fmt.Errorf("signature armor header %q not allowed", l)
		}
	}
	sigs, err := ParseDetachedSignatures([]byte(block))
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	for _, l := range text {
		b.WriteString(l + "\n")
	}
	return &ClearSigned{
		Text:   []byte(b.String()),
		hashed: []byte(strings.Join(text, "\r\n")),
		sigs:   sigs,
	}, nil
}

// BreakGlassOptions says what a signed break-glass request needs.
type BreakGlassOptions struct {
	// Signers is how many distinct admins must have signed; zero means 1.
	Signers int
	// MaxAge is how old a request may be; zero means MaxRequestAge, and
	// more than MaxRequestAge is an error.
	MaxAge time.Duration
}

// VerifiedRequest is a break-glass request with the admin signatures that
// authorise it.
type VerifiedRequest struct {
	Request
	Verification
	// Digest is the hex SHA-256 of the signed document, for the audit log.
	Digest string
}

// VerifyBreakGlass checks a clear-signed break-glass request at a.Now():
// strict clear-signed form, text-mode signatures by enough distinct admins
// over exactly that text, the break-glass purpose, a request created no
// more than MaxAge ago (and not in the future), signatures made after the
// request, and a TTL of at most an hour. It does not know whether the
// request was used before: BreakGlass.Issue checks that. Every refusal
// wraps ErrRefused.
func (a *Admins) VerifyBreakGlass(signed []byte, opts BreakGlassOptions) (VerifiedRequest, error) {
	fail := func(err error) (VerifiedRequest, error) {
		return VerifiedRequest{}, fmt.Errorf("trust: break-glass: %w: %w", ErrRefused, err)
	}
	need := opts.Signers
	if need == 0 {
		need = 1
	}
	maxAge := opts.MaxAge
	if maxAge == 0 {
		maxAge = MaxRequestAge
	}
	if need < 0 || maxAge < 0 || maxAge > MaxRequestAge {
		return fail(fmt.Errorf("bad options %+v", opts))
	}
	cs, err := ParseClearSigned(signed)
	if err != nil {
		return fail(err)
	}
	req, err := ParseRequest(cs.Text)
	if err != nil {
		return fail(err)
	}
	now := a.now
	if req.Created.After(now.Add(clockSkew)) {
		return fail(fmt.Errorf("request is created in the future (%s)", req.Created.Format(time.RFC3339)))
	}
	if age := now.Sub(req.Created); age > maxAge {
		return fail(fmt.Errorf("request is %s old; at most %s is accepted (make a new one)", age.Truncate(time.Second), maxAge))
	}
	var v Verification
	for _, sig := range cs.sigs {
		s, err := a.verifySignature(cs.hashed, sig, packet.SigTypeText)
		if err == nil && s.Created.Before(req.Created.Add(-clockSkew)) {
			err = errors.New("signature is older than the request")
		}
		if err != nil {
			v.Refused = append(v.Refused, RefusedSignature{Issuer: issuerString(sig), Reason: err.Error()})
			continue
		}
		v.Valid = append(v.Valid, s)
	}
	if n := len(v.Signers()); n < need {
		return fail(fmt.Errorf("signed by %d distinct admins, %d required (%s)", n, need, v))
	}
	return VerifiedRequest{Request: req, Verification: v, Digest: sha256Hex(signed)}, nil
}
