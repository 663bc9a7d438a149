package trust

import (
	"crypto"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// DefaultThreshold is the number of distinct admins whose certifications
// admit a new admin when the configuration does not say.
const DefaultThreshold = 2

// clockSkew is how far in the future a signature may be dated and still
// count, for signers whose clocks run a little ahead.
const clockSkew = 5 * time.Minute

// Options configures the admin computation.
type Options struct {
	// Threshold is how many distinct admins must certify a key to admit
	// it; zero means DefaultThreshold. Negative is an error.
	Threshold int
	// Now is the time keys, certifications and signatures are judged at;
	// the zero time means time.Now().
	Now time.Time
}

// Admin is one admitted admin key.
type Admin struct {
	// Fingerprint is the primary key's full fingerprint.
	Fingerprint Fingerprint
	// GitHub is the account the admin role is given to.
	GitHub GitHubAccount
	// UserID is the user ID naming the account.
	UserID string
	// Root is true for a pinned root key.
	Root bool
	// CertifiedBy lists the admins whose certifications admitted this key
	// (empty for roots), sorted.
	CertifiedBy []Fingerprint
	// Round is 0 for roots, and n for keys admitted in the n-th pass.
	Round int

	entity *openpgp.Entity
}

// Rejected is a key in the trust folder, or a pinned root, that is not an
// admin, with the reason.
type Rejected struct {
	Fingerprint Fingerprint
	UserIDs     []string
	Root        bool
	// CertifiedBy lists the admins that validly certified the key, fewer
	// than the threshold.
	CertifiedBy []Fingerprint
	Reason      string
}

// Admins is the admin set computed from a trust folder at one time. It is
// immutable and safe for concurrent use.
type Admins struct {
	admins    []*Admin
	rejected  []Rejected
	byFpr     map[Fingerprint]*Admin
	byKeyID   map[uint64][]*Admin
	byGitHub  map[int64][]*Admin
	others    map[uint64]Rejected // non-admin keys by key ID, for messages
	threshold int
	now       time.Time
}

// List returns the admins, roots first, then in order of admission.
func (a *Admins) List() []Admin {
	out := make([]Admin, len(a.admins))
	for i, ad := range a.admins {
		out[i] = *ad
		out[i].CertifiedBy = append([]Fingerprint(nil), ad.CertifiedBy...)
	}
	return out
}

// Rejected returns every key or root that is not an admin, with the reason.
func (a *Admins) Rejected() []Rejected { return append([]Rejected(nil), a.rejected...) }

// Threshold is the certification threshold the set was computed with.
func (a *Admins) Threshold() int { return a.threshold }

// Now is the time the set was computed at.
func (a *Admins) Now() time.Time { return a.now }

// IsAdmin reports whether the GitHub account with numeric ID githubID holds
// an admitted admin key. This is the only admin check the web server and the
// bastion should make: team membership on GitHub never makes an admin.
func (a *Admins) IsAdmin(githubID int64) bool { return len(a.byGitHub[githubID]) > 0 }

// ByGitHubID returns the admin keys of a GitHub account.
func (a *Admins) ByGitHubID(githubID int64) []Admin {
	var out []Admin
	for _, ad := range a.byGitHub[githubID] {
		out = append(out, *ad)
	}
	return out
}

// ByFingerprint returns the admin with primary key fpr.
func (a *Admins) ByFingerprint(fpr Fingerprint) (Admin, bool) {
	ad, ok := a.byFpr[fpr]
	if !ok {
		return Admin{}, false
	}
	return *ad, true
}

// pgpConfig is the go-crypto configuration for every check: SHA-1 and
// weaker hashes rejected for all signatures, RSA under 2048 bits and DSA
// keys refused, judged at now.
func pgpConfig(now time.Time) *packet.Config {
	weak := map[crypto.Hash]bool{crypto.MD5: true, crypto.SHA1: true, crypto.RIPEMD160: true}
	return &packet.Config{
		Time:                        func() time.Time { return now },
		RejectHashAlgorithms:        weak,
		RejectMessageHashAlgorithms: weak,
		MinRSABits:                  2048,
		RejectPublicKeyAlgorithms: map[packet.PublicKeyAlgorithm]bool{
			packet.PubKeyAlgoDSA:     true,
			packet.PubKeyAlgoElGamal: true,
		},
	}
}

// strongHash reports whether h may be used by a signature that counts.
func strongHash(h crypto.Hash) bool {
	switch h {
	case crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512, crypto.SHA3_256, crypto.SHA3_512:
		return true
	}
	return false
}

// candidate is a key that passed the checks of its own (valid, not
// revoked, one GitHub account) and may be admitted by certifications.
type candidate struct {
	block   *keyBlock
	entity  *openpgp.Entity
	account GitHubAccount
	uid     *openpgp.Identity
}

// ComputeAdmins computes the admin set of f at opts.Now.
func ComputeAdmins(f *Folder, opts Options) (*Admins, error) {
	k := opts.Threshold
	if k < 0 {
		return nil, fmt.Errorf("trust: threshold %d is negative", k)
	}
	if k == 0 {
		k = DefaultThreshold
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	cfg := pgpConfig(now)
	a := &Admins{
		byFpr: map[Fingerprint]*Admin{}, byKeyID: map[uint64][]*Admin{}, byGitHub: map[int64][]*Admin{},
		others: map[uint64]Rejected{}, threshold: k, now: now,
	}
	isRoot := map[Fingerprint]bool{}
	for _, r := range f.Roots {
		isRoot[r] = true
	}
	present := map[Fingerprint]bool{}
	cands := map[Fingerprint]*candidate{}
	rejected := map[Fingerprint]*Rejected{}
	for _, b := range f.keys {
		present[b.fpr] = true
		c, err := checkKey(b, now, cfg)
		if err != nil {
			rejected[b.fpr] = &Rejected{Fingerprint: b.fpr, UserIDs: b.userIDs(), Root: isRoot[b.fpr], Reason: err.Error()}
			continue
		}
		cands[b.fpr] = c
	}
	admit := func(c *candidate, root bool, by []Fingerprint, round int) {
		ad := &Admin{
			Fingerprint: c.block.fpr, GitHub: c.account, UserID: c.uid.Name, Root: root,
			CertifiedBy: by, Round: round, entity: c.entity,
		}
		a.admins = append(a.admins, ad)
		a.byFpr[ad.Fingerprint] = ad
		a.byGitHub[ad.GitHub.ID] = append(a.byGitHub[ad.GitHub.ID], ad)
		a.byKeyID[c.entity.PrimaryKey.KeyId] = append(a.byKeyID[c.entity.PrimaryKey.KeyId], ad)
		for _, sk := range c.entity.Subkeys {
			a.byKeyID[sk.PublicKey.KeyId] = append(a.byKeyID[sk.PublicKey.KeyId], ad)
		}
		delete(cands, c.block.fpr)
	}
	for _, r := range f.Roots {
		if c, ok := cands[r]; ok {
			admit(c, true, nil, 0)
		} else if !present[r] {
			rejected[r] = &Rejected{Fingerprint: r, Root: true, Reason: "root key is not in the keyring (add it with 'sallyport trust add')"}
		}
	}
	// Admit until nothing changes. Admission is monotone, so the result
	// does not depend on the order keys are looked at; sorting only makes
	// Round and the listing stable.
	for round := 1; ; round++ {
		var fprs []Fingerprint
		for fpr := range cands {
			fprs = append(fprs, fpr)
		}
		sort.Slice(fprs, func(i, j int) bool { return fprs[i] < fprs[j] })
		var admitted []*candidate
		var by [][]Fingerprint
		for _, fpr := range fprs {
			c := cands[fpr]
			certifiers := a.certifiers(c, cfg)
			if distinctAccounts(certifiers, a) >= k {
				admitted = append(admitted, c)
				by = append(by, certifiers)
			}
		}
		if len(admitted) == 0 {
			break
		}
		for i, c := range admitted {
			admit(c, false, by[i], round)
		}
	}
	for _, c := range cands {
		certifiers := a.certifiers(c, cfg)
		reason := fmt.Sprintf("certified by %d distinct admins; %d needed", distinctAccounts(certifiers, a), k)
		rejected[c.block.fpr] = &Rejected{
			Fingerprint: c.block.fpr, UserIDs: c.block.userIDs(), Root: isRoot[c.block.fpr],
			CertifiedBy: certifiers, Reason: reason,
		}
	}
	for _, r := range rejected {
		a.rejected = append(a.rejected, *r)
		if b := findBlock(f, r.Fingerprint); b != nil {
			if e, err := b.entity(); err == nil {
				a.others[e.PrimaryKey.KeyId] = *r
				for _, sk := range e.Subkeys {
					a.others[sk.PublicKey.KeyId] = *r
				}
			}
		}
	}
	sort.Slice(a.rejected, func(i, j int) bool { return a.rejected[i].Fingerprint < a.rejected[j].Fingerprint })
	return a, nil
}

func findBlock(f *Folder, fpr Fingerprint) *keyBlock {
	for _, b := range f.keys {
		if b.fpr == fpr {
			return b
		}
	}
	return nil
}

// distinctAccounts counts the distinct GitHub accounts among admin keys.
func distinctAccounts(fprs []Fingerprint, a *Admins) int {
	seen := map[int64]bool{}
	for _, f := range fprs {
		if ad, ok := a.byFpr[f]; ok {
			seen[ad.GitHub.ID] = true
		}
	}
	return len(seen)
}

// checkKey checks what a key must satisfy on its own to be admitted: a
// valid, unexpired, unrevoked primary key of a strong algorithm with
// exactly one GitHub account among its valid user IDs.
func checkKey(b *keyBlock, now time.Time, cfg *packet.Config) (*candidate, error) {
	e, err := b.entity()
	if err != nil {
		return nil, err
	}
	if err := checkAlgorithm(e.PrimaryKey); err != nil {
		return nil, err
	}
	// VerifyPrimaryKey can return a self-signature together with
	// ErrKeyExpired: only a nil error admits.
	if _, err := e.VerifyPrimaryKey(now, cfg); err != nil {
		switch {
		case errors.Is(err, pgperrors.ErrKeyExpired):
			return nil, errors.New("key is expired")
		case errors.Is(err, pgperrors.ErrKeyRevoked):
			return nil, errors.New("key is revoked")
		}
		return nil, fmt.Errorf("key has no valid self-signature at %s with SHA-256 or stronger (%v)", now.UTC().Format(time.RFC3339), err)
	}
	if e.Revoked(now) {
		return nil, errors.New("key is revoked")
	}
	if e.PrimaryKey.CreationTime.After(now.Add(clockSkew)) {
		return nil, errors.New("key is created in the future")
	}
	var found []*candidate
	var notes []string
	names := make([]string, 0, len(e.Identities))
	for n := range e.Identities {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		id := e.Identities[n]
		acct, err := ParseUserID(n)
		if err != nil {
			continue
		}
		if _, err := id.Verify(now, cfg); err != nil {
			notes = append(notes, fmt.Sprintf("user ID %q is not valid (%v)", n, err))
			continue
		}
		found = append(found, &candidate{block: b, entity: e, account: acct, uid: id})
	}
	switch {
	case len(found) == 0 && len(notes) > 0:
		return nil, errors.New(strings.Join(notes, "; "))
	case len(found) == 0:
		return nil, fmt.Errorf("no user ID of the form \"Name (github:LOGIN/ID) <email>\"")
	}
	for _, c := range found[1:] {
		if c.account.ID != found[0].account.ID {
			return nil, fmt.Errorf("user IDs name two GitHub accounts (%s and %s)", found[0].account, c.account)
		}
	}
	if len(found) > 1 {
		// Several user IDs naming the same account: certifications on
		// any one of them could be meant; use them all by merging is not
		// possible, so refuse the ambiguity.
		return nil, fmt.Errorf("%d user IDs name GitHub account %s; keep exactly one", len(found), found[0].account)
	}
	return found[0], nil
}

// checkAlgorithm refuses weak public key algorithms and sizes.
func checkAlgorithm(pk *packet.PublicKey) error {
	switch pk.PubKeyAlgo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSASignOnly:
		n, err := pk.BitLength()
		if err != nil || n < 2048 {
			return fmt.Errorf("RSA key of %d bits; at least 2048 are required", n)
		}
		return nil
	case packet.PubKeyAlgoEdDSA, packet.PubKeyAlgoECDSA, packet.PubKeyAlgoEd25519, packet.PubKeyAlgoEd448:
		if pk.PubKeyAlgo == packet.PubKeyAlgoECDSA || pk.PubKeyAlgo == packet.PubKeyAlgoEdDSA {
			if c, err := pk.Curve(); err != nil || c == packet.CurveSecP256k1 {
				return fmt.Errorf("elliptic curve %q is not accepted", c)
			}
		}
		return nil
	}
	return fmt.Errorf("public key algorithm %d is not accepted", pk.PubKeyAlgo)
}

// certifiers returns the admins that validly certified c's GitHub user ID,
// sorted. A certifier sharing c's GitHub account does not count.
func (a *Admins) certifiers(c *candidate, cfg *packet.Config) []Fingerprint {
	seen := map[Fingerprint]bool{}
	var out []Fingerprint
	for _, vs := range c.uid.OtherCertifications {
		sig := vs.Packet
		if !isCertification(sig.SigType) {
			continue
		}
		for _, ad := range a.issuers(sig) {
			if seen[ad.Fingerprint] || ad.GitHub.ID == c.account.ID {
				continue
			}
			if err := a.checkCertification(c, sig, ad, cfg); err != nil {
				continue
			}
			seen[ad.Fingerprint] = true
			out = append(out, ad.Fingerprint)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func isCertification(t packet.SignatureType) bool {
	switch t {
	case packet.SigTypeGenericCert, packet.SigTypePersonaCert, packet.SigTypeCasualCert, packet.SigTypePositiveCert:
		return true
	}
	return false
}

// issuers returns the admins whose primary key may have made sig.
func (a *Admins) issuers(sig *packet.Signature) []*Admin {
	if len(sig.IssuerFingerprint) > 0 {
		if ad, ok := a.byFpr[fingerprintOf(sig.IssuerFingerprint)]; ok {
			return []*Admin{ad}
		}
		return nil
	}
	if sig.IssuerKeyId == nil {
		return nil
	}
	var out []*Admin
	for _, ad := range a.byKeyID[*sig.IssuerKeyId] {
		if ad.entity.PrimaryKey.KeyId == *sig.IssuerKeyId {
			out = append(out, ad)
		}
	}
	return out
}

// checkCertification checks one certification by admin ad over c's GitHub
// user ID.
func (a *Admins) checkCertification(c *candidate, sig *packet.Signature, ad *Admin, cfg *packet.Config) error {
	if !strongHash(sig.Hash) {
		return fmt.Errorf("certification uses %s", sig.Hash)
	}
	if err := checkTimes(sig, ad.entity.PrimaryKey.CreationTime, a.now); err != nil {
		return err
	}
	if sig.CreationTime.Before(c.entity.PrimaryKey.CreationTime) {
		return errors.New("certification is older than the certified key")
	}
	if err := ad.entity.PrimaryKey.VerifyUserIdSignature(c.uid.Name, c.entity.PrimaryKey, sig); err != nil {
		return err
	}
	// A revocation by the same certifier, made at or after the
	// certification, revokes it. Revocations count whatever their hash:
	// honouring one can only admit fewer keys.
	for _, vs := range c.uid.OtherCertifications {
		rev := vs.Packet
		if rev.SigType != packet.SigTypeCertificationRevocation || !sameIssuer(rev, ad) {
			continue
		}
		if rev.CreationTime.Before(sig.CreationTime) || rev.CreationTime.After(a.now.Add(clockSkew)) {
			continue
		}
		if ad.entity.PrimaryKey.VerifyUserIdSignature(c.uid.Name, c.entity.PrimaryKey, rev) == nil {
			return errors.New("certification is revoked")
		}
	}
	return nil
}

func sameIssuer(sig *packet.Signature, ad *Admin) bool {
	if len(sig.IssuerFingerprint) > 0 {
		return fingerprintOf(sig.IssuerFingerprint) == ad.Fingerprint
	}
	return sig.IssuerKeyId != nil && *sig.IssuerKeyId == ad.entity.PrimaryKey.KeyId
}

// checkTimes checks a signature's own validity window at now: made no
// earlier than its key, not dated in the future beyond clockSkew, not
// expired, and without unknown critical notations.
func checkTimes(sig *packet.Signature, keyCreated, now time.Time) error {
	if sig.CreationTime.Before(keyCreated) {
		return errors.New("signature is older than its key")
	}
	if sig.CreationTime.After(now.Add(clockSkew)) {
		return fmt.Errorf("signature is dated in the future (%s)", sig.CreationTime.UTC().Format(time.RFC3339))
	}
	if sig.SigLifetimeSecs != nil && *sig.SigLifetimeSecs != 0 {
		exp := sig.CreationTime.Add(time.Duration(*sig.SigLifetimeSecs) * time.Second)
		if !now.Before(exp) {
			return fmt.Errorf("signature expired at %s", exp.UTC().Format(time.RFC3339))
		}
	}
	for _, n := range sig.Notations {
		if n.IsCritical {
			return fmt.Errorf("signature has an unknown critical notation %q", n.Name)
		}
	}
	return nil
}

// Load reads the trust folder at dir and computes its admin set. The set
// is judged at opts.Now; callers that keep it should compute it again
// periodically (it takes milliseconds) so that expiries take effect.
func Load(dir string, opts Options) (*Admins, error) {
	f, err := LoadFolder(dir)
	if err != nil {
		return nil, err
	}
	return ComputeAdmins(f, opts)
}
