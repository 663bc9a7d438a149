package web

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/store"
	"github.com/sallyport/sallyport/trust"
)

// PolicySignatures makes a PolicyFile load a policy only when enough
// admins signed it: detached signatures (`gpg --detach-sign --armor`) over
// its exact bytes in policy.yaml.asc or policy.yaml.*.asc beside it, by
// Required distinct admins of the trust folder at the time of loading.
//
// Rollback: every signature must be made after the newest signature of
// the policy in force, so a policy that was once signed cannot be put back
// in place of a newer one; to return to an old policy, admins sign it
// again. Across restarts the same holds through Previous.
type PolicySignatures struct {
	// Required is how many distinct admins (GitHub accounts) must sign; at
	// least 1.
	Required int
	// Admins is the admin set, recomputed for every load. Required.
	Admins *AdminSet
	// Previous is the last signed policy loaded before this process
	// started (LastSignedPolicy reads it from the audit trail); zero means
	// none. A policy file with other content must carry signatures newer
	// than Previous.Newest.
	Previous SignedPolicy
}

// SignedPolicy identifies a signed policy that was loaded.
type SignedPolicy struct {
	// SHA256 is the hex SHA-256 of the policy file's bytes.
	SHA256 string
	// Newest is the creation time of its newest valid admin signature.
	Newest time.Time
}

// PolicyRefusal is the last policy file refused while another stays in
// force, for the admin page.
type PolicyRefusal struct {
	At     time.Time
	Cause  string // what asked for the load
	Reason string
}

// Audit event fields of a signed policy load.
const (
	fieldSignedBy         = "signed_by"
	fieldSignaturesNewest = "signatures_newest"
)

// RequireSignatures makes f load only policies signed as ps says from now
// on, and checks the policy file again at once under that rule, audited.
// Call it before the policy is used: an error (matching ErrPolicyRefused
// when the file is not signed well enough) means there is no good signed
// policy and the server must not start.
func (f *PolicyFile) RequireSignatures(ctx context.Context, ps PolicySignatures) error {
	if ps.Required < 1 || ps.Admins == nil {
		return errors.New("web: policy signatures: need at least one required signature and an admin set")
	}
	f.mu.Lock()
	f.sign = &ps
	f.mu.Unlock()
	_, err := f.reload(ctx, "start (admin signatures required)", true)
	return err
}

// Signatures returns the verified admin signatures of the policy in force;
// nil if it was loaded without signatures being required.
func (f *PolicyFile) Signatures() *trust.Verification { return f.cur.Load().sig }

// RequiredSignatures is how many distinct admins must sign a policy; 0
// when signatures are not required.
func (f *PolicyFile) RequiredSignatures() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sign == nil {
		return 0
	}
	return f.sign.Required
}

// Refusal returns the last refusal since the policy in force was loaded;
// nil if there was none.
func (f *PolicyFile) Refusal() *PolicyRefusal { return f.refused.Load() }

// Path is the policy file.
func (f *PolicyFile) Path() string { return f.path }

// checkSignatures verifies the signature files of data. It returns the
// verification and a hash over the policy and its signature files, by
// which a refusal is remembered (new signatures are a new attempt). f.mu
// is held.
func (f *PolicyFile) checkSignatures(data []byte, hash [sha256.Size]byte, old *loadedPolicy) (*trust.Verification, [sha256.Size]byte, error) {
	key := hash
	sigFiles, err := trust.ReadSignatureFiles(f.path)
	if err != nil {
		return nil, key, fmt.Errorf("admin signatures required: %w", err)
	}
	h := sha256.New()
	h.Write(data)
	for _, sf := range sigFiles {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(sf))))
		h.Write(sf)
	}
	copy(key[:], h.Sum(nil))
	admins, err := f.sign.Admins.Refresh("policy load")
	if err != nil {
		return nil, key, fmt.Errorf("admin signatures required: %w", err)
	}
	var notBefore time.Time
	switch {
	case old != nil && old.sig != nil:
		notBefore = old.sig.Newest()
	case f.sign.Previous.SHA256 != "" && f.sign.Previous.SHA256 != hex.EncodeToString(hash[:]):
		notBefore = f.sign.Previous.Newest
	}
	v, err := admins.VerifyPolicy(data, sigFiles, trust.PolicyOptions{Required: f.sign.Required, NotBefore: notBefore})
	if err != nil {
		return nil, key, err
	}
	return &v, key, nil
}

func sigSummary(v *trust.Verification) string {
	if v == nil {
		return "not required"
	}
	return v.String()
}

func addSignatureFields(fields map[string]string, v *trust.Verification) {
	if v == nil {
		return
	}
	var by []string
	for _, s := range v.Signers() {
		by = append(by, s.String())
	}
	fields[fieldSignedBy] = strings.Join(by, ",")
	fields[fieldSignaturesNewest] = v.Newest().UTC().Format(time.RFC3339Nano)
}

// AuditReader lists audit events; the store implements it.
type AuditReader interface {
	AuditEvents(ctx context.Context, q store.AuditQuery) ([]audit.Event, error)
}

// LastSignedPolicy returns the last signed policy loaded according to the
// audit trail, for PolicySignatures.Previous; zero if there is none among
// the last 1000 policy loads.
func LastSignedPolicy(ctx context.Context, events AuditReader) (SignedPolicy, error) {
	evs, err := events.AuditEvents(ctx, store.AuditQuery{Type: audit.TypePolicyLoad, Limit: 1000})
	if err != nil {
		return SignedPolicy{}, fmt.Errorf("web: last signed policy: %w", err)
	}
	for _, e := range evs {
		newest := e.Fields[fieldSignaturesNewest]
		if e.Outcome != audit.OutcomeOK || newest == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, newest)
		if err != nil {
			return SignedPolicy{}, fmt.Errorf("web: last signed policy: audit event of %s: %w", e.Time.Format(time.RFC3339), err)
		}
		return SignedPolicy{SHA256: e.Fields["sha256"], Newest: t}, nil
	}
	return SignedPolicy{}, nil
}
