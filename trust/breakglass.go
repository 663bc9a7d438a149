package trust

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/ca"
)

// AuditTypeBreakGlass is the audit event type of every break-glass
// attempt, accepted or refused.
const AuditTypeBreakGlass = "breakglass"

// RequestLedger remembers which signed requests were used. The store
// implements it.
type RequestLedger interface {
	// UseRequest durably records the first use of request id together
	// with the audit event e, in one transaction, and returns an error if
	// id was recorded before; the request must then be refused.
	UseRequest(ctx context.Context, id string, e audit.Event) error
}

// Auditor records audit events durably. The store implements it.
type Auditor interface {
	Audit(ctx context.Context, e audit.Event) error
}

// BreakGlass turns signed break-glass requests into certificates. The
// same code serves the offline CLI and the web server's POST endpoint.
type BreakGlass struct {
	// Admins is the admin set to check signatures against; compute it
	// afresh (trust.Load) for each request so that expiries count.
	Admins *Admins
	// Authority issues the certificate with the user CA.
	Authority *ca.Authority
	// Ledger refuses a request used before.
	Ledger RequestLedger
	// Audit records refusals.
	Audit Auditor
	// Options are passed to VerifyBreakGlass.
	Options BreakGlassOptions
	// Actor says who submitted the request, e.g. "offline:alice" or
	// "web:203.0.113.7"; required.
	Actor string
}

// Issue verifies a clear-signed break-glass request, marks it used, and
// issues a user certificate for the requested principal and key lasting
// the requested TTL (at most an hour), with permit-pty only. Its key ID is
// "breakglass:REQUEST-ID host=HOST by=github:ID"; the bastion must allow a
// break-glass certificate only to HOST. Every attempt is audited as a
// "breakglass" event; refusals wrap ErrRefused.
func (b *BreakGlass) Issue(ctx context.Context, signed []byte) (*ssh.Certificate, VerifiedRequest, error) {
	if b.Admins == nil || b.Authority == nil || b.Ledger == nil || b.Audit == nil || b.Actor == "" {
		return nil, VerifiedRequest{}, errors.New("trust: break-glass: incomplete configuration")
	}
	vr, err := b.Admins.VerifyBreakGlass(signed, b.Options)
	if err != nil {
		return nil, VerifiedRequest{}, b.refuse(ctx, "", sha256Hex(signed), err)
	}
	first := vr.Signers()[0]
	keyID := "breakglass:" + vr.ID + " host=" + vr.Host + " by=github:" + strconv.FormatInt(first.ID, 10)
	if err := ca.ValidateKeyID(keyID); err != nil {
		return nil, vr, b.refuse(ctx, vr.ID, vr.Digest, fmt.Errorf("%w: %w", ErrRefused, err))
	}
	ev := b.event(vr, audit.OutcomeOK, "")
	if err := b.Ledger.UseRequest(ctx, vr.ID, ev); err != nil {
		return nil, vr, b.refuse(ctx, vr.ID, vr.Digest, fmt.Errorf("%w: %w", ErrRefused, err))
	}
	cert, err := b.Authority.IssueUser(ctx, ca.UserRequest{
		PublicKey:   vr.Key,
		Principals:  []string{vr.Principal},
		TTL:         vr.TTL,
		MaxTTL:      MaxBreakGlassTTL,
		Permissions: []ca.Permission{ca.PermitPTY},
		KeyID:       keyID,
		Identity:    "breakglass:" + vr.ID,
	})
	if err != nil {
		// The request stays used: a second attempt needs a new request.
		return nil, vr, b.refuse(ctx, vr.ID, vr.Digest, fmt.Errorf("issue certificate: %w", err))
	}
	return cert, vr, nil
}

func (b *BreakGlass) event(vr VerifiedRequest, outcome, reason string) audit.Event {
	var signers, keys []string
	for _, s := range vr.Signers() {
		signers = append(signers, s.String())
	}
	for _, s := range vr.Valid {
		keys = append(keys, string(s.KeyFingerprint))
	}
	return audit.Event{
		Type: AuditTypeBreakGlass, Actor: b.Actor, Subject: "breakglass:" + vr.ID, Outcome: outcome, Reason: reason,
		Fields: map[string]string{
			"request_id":      vr.ID,
			"request_created": vr.Created.Format("2006-01-02T15:04:05Z"),
			"principal":       vr.Principal,
			"host":            vr.Host,
			"ttl":             vr.TTL.String(),
			"reason":          vr.Reason,
			"key_fingerprint": ssh.FingerprintSHA256(vr.Key),
			"signed_by":       strings.Join(signers, ","),
			"signing_keys":    strings.Join(keys, ","),
			"digest":          vr.Digest,
		},
	}
}

// refuse audits a refused attempt and returns err. An audit failure is
// joined to err: the refusal stands either way.
func (b *BreakGlass) refuse(ctx context.Context, id, digest string, cause error) error {
	subject := "breakglass"
	if id != "" {
		subject += ":" + id
	}
	ev := audit.Event{
		Type: AuditTypeBreakGlass, Actor: b.Actor, Subject: subject, Outcome: audit.OutcomeDenied,
		Reason: cause.Error(), Fields: map[string]string{"digest": digest},
	}
	if err := b.Audit.Audit(ctx, ev); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}
