package trust

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Errors of signature checks. Callers branch on them with errors.Is.
var (
	// ErrNotDetached means a signature file is not a detached signature:
	// an inline-signed or clear-signed message, or other OpenPGP data.
	ErrNotDetached = errors.New("not a detached signature")
	// ErrNotEnoughSignatures means fewer distinct admins signed than
	// required.
	ErrNotEnoughSignatures = errors.New("not enough valid admin signatures")
)

// maxSignatures bounds the signatures read from one document's signature
// files.
const maxSignatures = 100

// Signature is a valid signature by an admin.
type Signature struct {
	// Admin is the admin whose key made the signature.
	Admin Admin
	// KeyFingerprint is the (sub)key that signed.
	KeyFingerprint Fingerprint
	// Created is the signature's creation time.
	Created time.Time
}

// RefusedSignature is a signature that does not count, with the reason.
type RefusedSignature struct {
	// Issuer is the key ID or fingerprint the signature names.
	Issuer string
	Reason string
}

// Verification is the outcome of checking the signatures over one
// document.
type Verification struct {
	Valid   []Signature
	Refused []RefusedSignature
}

// Signers returns the distinct GitHub accounts among the valid signatures,
// sorted by ID.
func (v Verification) Signers() []GitHubAccount {
	seen := map[int64]bool{}
	var out []GitHubAccount
	for _, s := range v.Valid {
		if !seen[s.Admin.GitHub.ID] {
			seen[s.Admin.GitHub.ID] = true
			out = append(out, s.Admin.GitHub)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// String summarises v for logs and the admin page.
func (v Verification) String() string {
	var parts []string
	for _, s := range v.Valid {
		parts = append(parts, fmt.Sprintf("valid signature by %s (%s) at %s", s.Admin.GitHub, s.Admin.Fingerprint, s.Created.UTC().Format(time.RFC3339)))
	}
	for _, r := range v.Refused {
		parts = append(parts, fmt.Sprintf("refused signature by %s: %s", r.Issuer, r.Reason))
	}
	if len(parts) == 0 {
		return "no signatures"
	}
	return strings.Join(parts, "; ")
}

// ParseDetachedSignatures reads the OpenPGP signature packets of one or
// more signature files (armored "PGP SIGNATURE" blocks or binary), as
// `gpg --detach-sign [--armor]` writes them and as concatenating such files
// gives. Anything else, an inline-signed message or a clear-signed text
// among them, fails with ErrNotDetached.
func ParseDetachedSignatures(files ...[]byte) ([]*packet.Signature, error) {
	var sigs []*packet.Signature
	for i, data := range files {
		if len(data) > maxKeyFileSize {
			return nil, fmt.Errorf("signature file %d: larger than %d bytes", i+1, maxKeyFileSize)
		}
		if bytes.Contains(data, []byte("-----BEGIN PGP SIGNED MESSAGE-----")) {
			return nil, fmt.Errorf("signature file %d: a clear-signed message: %w (sign with gpg --detach-sign)", i+1, ErrNotDetached)
		}
		bin, err := dearmor(data, signatureBlock)
		if err != nil {
			return nil, fmt.Errorf("signature file %d: %w: %w", i+1, ErrNotDetached, err)
		}
		pr := packet.NewReader(bytes.NewReader(bin))
		n := 0
		for {
			p, err := pr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("signature file %d: %w: %w", i+1, ErrNotDetached, err)
			}
			sig, ok := p.(*packet.Signature)
			if !ok {
				return nil, fmt.Errorf("signature file %d: holds a %T packet, as an inline-signed message does: %w", i+1, p, ErrNotDetached)
			}
			sigs = append(sigs, sig)
			n++
			if len(sigs) > maxSignatures {
				return nil, fmt.Errorf("more than %d signatures", maxSignatures)
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("signature file %d: no signature: %w", i+1, ErrNotDetached)
		}
	}
	if len(sigs) == 0 {
		return nil, fmt.Errorf("no signature files: %w", ErrNotDetached)
	}
	return sigs, nil
}

// VerifyDetached checks detached signatures over the exact bytes of data.
// Only binary-mode signatures (gpg --detach-sign, without --textmode) by
// admin keys valid now count. The error is non-nil only when a signature
// file is malformed or not detached; refused signatures are listed in the
// result.
func (a *Admins) VerifyDetached(data []byte, sigFiles ...[]byte) (Verification, error) {
	sigs, err := ParseDetachedSignatures(sigFiles...)
	if err != nil {
		return Verification{}, fmt.Errorf("trust: %w", err)
	}
	var v Verification
	for _, sig := range sigs {
		s, err := a.verifySignature(data, sig, packet.SigTypeBinary)
		if err != nil {
			v.Refused = append(v.Refused, RefusedSignature{Issuer: issuerString(sig), Reason: err.Error()})
			continue
		}
		v.Valid = append(v.Valid, s)
	}
	return v, nil
}

// PolicyOptions says what a signed policy must carry.
type PolicyOptions struct {
	// Required is how many distinct admins (GitHub accounts) must sign;
	// it must be at least 1.
	Required int
	// NotBefore, if not zero, refuses signatures made before it. Pass the
	// newest signature time of the policy in force, so an older signed
	// policy cannot be replayed to roll back a change.
	NotBefore time.Time
}

// VerifyPolicy checks that policy carries valid detached signatures by at
// least opts.Required distinct admins, made over its exact bytes. It
// returns the verification in all cases, and an error wrapping
// ErrNotEnoughSignatures or ErrNotDetached when the policy must not be
// loaded.
//
// A detached signature covers one document's exact bytes, so a signature
// over an older policy or over any other document (a break-glass request)
// cannot count for this one; NotBefore additionally refuses re-signed old
// policies.
func (a *Admins) VerifyPolicy(policy []byte, sigFiles [][]byte, opts PolicyOptions) (Verification, error) {
	if opts.Required < 1 {
		return Verification{}, fmt.Errorf("trust: policy: %d required signatures; at least 1", opts.Required)
	}
	v, err := a.VerifyDetached(policy, sigFiles...)
	if err != nil {
		return v, fmt.Errorf("trust: policy: %w", err)
	}
	if !opts.NotBefore.IsZero() {
		var kept []Signature
		for _, s := range v.Valid {
			if s.Created.Before(opts.NotBefore) {
				v.Refused = append(v.Refused, RefusedSignature{
					Issuer: string(s.KeyFingerprint),
					Reason: fmt.Sprintf("made at %s, before the policy in force was signed (%s)", s.Created.UTC().Format(time.RFC3339), opts.NotBefore.UTC().Format(time.RFC3339)),
				})
				continue
			}
			kept = append(kept, s)
		}
		v.Valid = kept
	}
	if n := len(v.Signers()); n < opts.Required {
		return v, fmt.Errorf("trust: policy: signed by %d distinct admins, %d required: %w (%s)", n, opts.Required, ErrNotEnoughSignatures, v)
	}
	return v, nil
}

// Newest returns the creation time of the newest valid signature, for
// PolicyOptions.NotBefore of the next load.
func (v Verification) Newest() time.Time {
	var t time.Time
	for _, s := range v.Valid {
		if s.Created.After(t) {
			t = s.Created
		}
	}
	return t
}

// SignatureFiles returns the signature files of the document at path:
// path+".asc" and every path+".*.asc" (such as "policy.yaml.alice.asc"), in
// name order. It fails if there is none.
func SignatureFiles(path string) ([]string, error) {
	var files []string
	if _, err := os.Stat(path + ".asc"); err == nil {
		files = append(files, path+".asc")
	}
	more, err := filepath.Glob(escapeGlob(path) + ".*.asc")
	if err != nil {
		return nil, err
	}
	sort.Strings(more)
	files = append(files, more...)
	if len(files) == 0 {
		return nil, fmt.Errorf("trust: no signature file %s.asc or %s.*.asc", path, path)
	}
	return files, nil
}

func escapeGlob(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

// ReadSignatureFiles reads the files SignatureFiles names.
func ReadSignatureFiles(path string) ([][]byte, error) {
	names, err := SignatureFiles(path)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, n := range names {
		b, err := readLimited(n, maxKeyFileSize)
		if err != nil {
			return nil, fmt.Errorf("trust: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}

func issuerString(sig *packet.Signature) string {
	if len(sig.IssuerFingerprint) > 0 {
		return string(fingerprintOf(sig.IssuerFingerprint))
	}
	if sig.IssuerKeyId != nil {
		return fmt.Sprintf("key ID %016X", *sig.IssuerKeyId)
	}
	return "unknown issuer"
}

// verifySignature checks one signature of type want over signed, which
// must already be in the form the signature type hashes (for text
// signatures, canonical CRLF text).
func (a *Admins) verifySignature(signed []byte, sig *packet.Signature, want packet.SignatureType) (Signature, error) {
	if sig.SigType != want {
		if sig.SigType == packet.SigTypeText && want == packet.SigTypeBinary {
			return Signature{}, errors.New("text-mode signature: it ignores line-ending changes; sign the exact bytes with gpg --detach-sign (no --textmode)")
		}
		return Signature{}, fmt.Errorf("signature type %#x; want %#x", sig.SigType, want)
	}
	if !strongHash(sig.Hash) {
		return Signature{}, fmt.Errorf("signature uses %s; SHA-256 or stronger is required", sig.Hash)
	}
	ad, keyID, err := a.signer(sig)
	if err != nil {
		return Signature{}, err
	}
	// The key must be a valid signing key of an admitted admin now: not
	// expired, not revoked, bound by a valid self-signature.
	key, ok := ad.entity.SigningKeyById(a.now, keyID, pgpConfig(a.now))
	if !ok {
		return Signature{}, fmt.Errorf("key %016X of admin %s is not a valid signing key now (expired, revoked or not for signing)", keyID, ad.GitHub)
	}
	if len(sig.IssuerFingerprint) > 0 && !bytes.Equal(sig.IssuerFingerprint, key.PublicKey.Fingerprint) {
		return Signature{}, errors.New("issuer fingerprint does not match the signing key")
	}
	if err := checkAlgorithm(key.PublicKey); err != nil {
		return Signature{}, err
	}
	if err := checkTimes(sig, key.PublicKey.CreationTime, a.now); err != nil {
		return Signature{}, err
	}
	h := sig.Hash.New()
	if salt := sig.Salt(); salt != nil {
		h.Write(salt)
	}
	h.Write(signed)
	if err := key.PublicKey.VerifySignature(h, sig); err != nil {
		return Signature{}, fmt.Errorf("bad signature by %s: %v", ad.GitHub, err)
	}
	return Signature{Admin: *ad, KeyFingerprint: fingerprintOf(key.PublicKey.Fingerprint), Created: sig.CreationTime}, nil
}

// signer finds the admin whose primary key or subkey sig names.
func (a *Admins) signer(sig *packet.Signature) (*Admin, uint64, error) {
	var keyID uint64
	switch {
	case len(sig.IssuerFingerprint) == 20 || len(sig.IssuerFingerprint) == 32:
		// v4 key IDs are the last 8 bytes of the fingerprint, v6 the first.
		fp := sig.IssuerFingerprint
		if len(fp) == 20 {
			fp = fp[12:]
		}
		keyID = binary.BigEndian.Uint64(fp[:8])
		if sig.IssuerKeyId != nil && *sig.IssuerKeyId != keyID {
			return nil, 0, errors.New("issuer key ID and fingerprint disagree")
		}
	case sig.IssuerKeyId != nil:
		keyID = *sig.IssuerKeyId
	default:
		return nil, 0, errors.New("signature names no issuer")
	}
	ads := a.byKeyID[keyID]
	if len(ads) == 1 {
		return ads[0], keyID, nil
	}
	if len(ads) > 1 {
		return nil, 0, fmt.Errorf("key ID %016X is shared by several admin keys; refusing to guess", keyID)
	}
	if r, ok := a.others[keyID]; ok {
		return nil, 0, fmt.Errorf("made by %s, which is not an admin: %s", r.Fingerprint, r.Reason)
	}
	return nil, 0, fmt.Errorf("made by key %016X, which is not in the trust folder", keyID)
}
