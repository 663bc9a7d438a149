package ca

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Ledger allocates serial numbers and durably records what was issued. The
// store implements it; the Authority never returns a certificate that was
// not recorded.
type Ledger interface {
	// NextSerial returns a serial never returned before and never 0,
	// committed durably before it returns.
	NextSerial(ctx context.Context) (uint64, error)
	// RecordIssued durably records an issued certificate for identity.
	RecordIssued(ctx context.Context, cert *ssh.Certificate, identity string) error
}

// Permission is a permit-* extension of a user certificate.
type Permission string

// The permissions a user or session certificate may carry.
const (
	PermitPTY             Permission = "pty"
	PermitPortForwarding  Permission = "port-forwarding"
	PermitAgentForwarding Permission = "agent-forwarding"
	PermitX11Forwarding   Permission = "x11-forwarding"
	PermitUserRC          Permission = "user-rc"
	extensionPrefix                  = "permit-"
	criticalForceCommand             = "force-command"
	criticalSourceAddress            = "source-address"
	defaultUserSkew                  = 5 * time.Minute
	defaultSessionSkew               = 30 * time.Second
	maxSessionTTL                    = 5 * time.Minute
	keyIDSerialSeparator             = " serial="
)

// extensions maps each permission to its OpenSSH certificate extension.
var extensions = map[Permission]string{
	PermitPTY:             "permit-pty",
	PermitPortForwarding:  "permit-port-forwarding",
	PermitAgentForwarding: "permit-agent-forwarding",
	PermitX11Forwarding:   "permit-X11-forwarding",
	PermitUserRC:          "permit-user-rc",
}

// Extension returns the OpenSSH extension name of p, such as
// "permit-X11-forwarding", or "" if p is unknown.
func (p Permission) Extension() string { return extensions[p] }

// ParsePermissions parses a comma-separated list such as
// "pty,port-forwarding". The empty string is the empty list.
func ParsePermissions(s string) ([]Permission, error) {
	var ps []Permission
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		f = strings.TrimPrefix(strings.ToLower(f), extensionPrefix)
		if f == "x11-forwarding" || f == "x11" {
			f = string(PermitX11Forwarding)
		}
		p := Permission(f)
		if p.Extension() == "" {
			return nil, fmt.Errorf("unknown permission %q (want pty, port-forwarding, agent-forwarding, x11-forwarding, user-rc)", f)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// UserRequest asks for a user certificate signed by the user CA.
type UserRequest struct {
	// PublicKey is the key to certify. Certificates, DSA keys, RSA keys
	// under 2048 bits and CA keys are refused.
	PublicKey ssh.PublicKey
	// Principals are the user names the certificate is valid for. At least
	// one is required: OpenSSH reads an empty list as "any user".
	Principals []string
	// TTL is how long the certificate is valid from now. It must be
	// positive and no more than MaxTTL.
	TTL time.Duration
	// MaxTTL is the caller's ceiling for TTL; zero is an error, never
	// "unlimited".
	MaxTTL time.Duration
	// Permissions become permit-* extensions; none means none.
	Permissions []Permission
	// SourceAddresses, if any, become the source-address critical option.
	SourceAddresses []netip.Prefix
	// ForceCommand, if not empty, becomes the force-command critical option.
	ForceCommand string
	// KeyID names the person (for example "alice github:1234"); the
	// Authority appends the serial. See ValidateKeyID.
	KeyID string
	// Identity is what the store records as the certificate's owner, such
	// as "github:1234". Empty means the KeyID.
	Identity string
}

// SessionRequest asks for a certificate signed by the session CA, used by
// the bastion toward one target for one connection.
type SessionRequest struct {
	// PublicKey is the bastion's ephemeral key for this connection.
	PublicKey ssh.PublicKey
	// Principal is the one login requested on the target.
	Principal string
	// TTL must be positive and at most five minutes.
	TTL time.Duration
	// Permissions and ForceCommand are those the grant allows on the target.
	Permissions  []Permission
	ForceCommand string
	// KeyID names the user and the session.
	KeyID string
	// Identity is recorded in the store; empty means the KeyID.
	Identity string
}

// HostRequest asks for a host certificate signed by the host CA.
type HostRequest struct {
	// PublicKey is the host key to certify.
	PublicKey ssh.PublicKey
	// Hostnames are the names (or IP addresses) the host is known by; at
	// least one is required, wildcards are refused.
	Hostnames []string
	// TTL must be positive and no more than MaxTTL.
	TTL, MaxTTL time.Duration
}

// Authority issues certificates with the three CA keys.
type Authority struct {
	keys   Keys
	ledger Ledger

	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Rand is the source of certificate nonces; nil means crypto/rand.
	Rand io.Reader
	// Skew is how far in the past user and host certificates start, to
	// tolerate clocks that are behind; zero means five minutes.
	Skew time.Duration
}

// New returns an Authority signing with keys and recording in ledger. The
// three keys must be present and distinct.
func New(keys Keys, ledger Ledger) (*Authority, error) {
	if err := keys.check(); err != nil {
		return nil, err
	}
	if ledger == nil {
		return nil, errors.New("ca: no ledger to record certificates")
	}
	return &Authority{keys: keys, ledger: ledger}, nil
}

// PublicKey returns the public key of the authority of kind k.
func (a *Authority) PublicKey(k Kind) ssh.PublicKey {
	if s := a.keys.Signer(k); s != nil {
		return s.PublicKey()
	}
	return nil
}

func (a *Authority) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *Authority) rand() io.Reader {
	if a.Rand != nil {
		return a.Rand
	}
	return rand.Reader
}

func (a *Authority) skew() time.Duration {
	if a.Skew > 0 {
		return a.Skew
	}
	return defaultUserSkew
}

// validity checks ttl against max and returns the certificate's window.
func (a *Authority) validity(ttl, max, skew time.Duration) (after, before uint64, err error) {
	if max <= 0 {
		return 0, 0, errors.New("no maximum lifetime set")
	}
	if ttl <= 0 {
		return 0, 0, fmt.Errorf("lifetime %s is not positive", ttl)
	}
	if ttl > max {
		return 0, 0, fmt.Errorf("lifetime %s exceeds the maximum of %s", ttl, max)
	}
	now := a.now()
	return uint64(now.Add(-skew).Unix()), uint64(now.Add(ttl).Unix()), nil
}

// IssueUser validates r, signs a user certificate with the user CA, records
// it in the ledger and returns it.
func (a *Authority) IssueUser(ctx context.Context, r UserRequest) (*ssh.Certificate, error) {
	cert, err := a.userCert(r)
	if err != nil {
		return nil, fmt.Errorf("ca: user certificate: %w", err)
	}
	identity := r.Identity
	if identity == "" {
		identity = r.KeyID
	}
	return a.sign(ctx, KindUser, cert, r.KeyID, identity)
}

func (a *Authority) userCert(r UserRequest) (*ssh.Certificate, error) {
	if err := checkSubjectKey(r.PublicKey, a.keys, true); err != nil {
		return nil, err
	}
	if err := ValidateKeyID(r.KeyID); err != nil {
		return nil, err
	}
	principals, err := checkPrincipals(r.Principals)
	if err != nil {
		return nil, err
	}
	after, before, err := a.validity(r.TTL, r.MaxTTL, a.skew())
	if err != nil {
		return nil, err
	}
	perms, err := permissions(r.Permissions, r.ForceCommand, r.SourceAddresses)
	if err != nil {
		return nil, err
	}
	return &ssh.Certificate{
		Key:             r.PublicKey,
		CertType:        ssh.UserCert,
		ValidPrincipals: principals,
		ValidAfter:      after,
		ValidBefore:     before,
		Permissions:     perms,
	}, nil
}

// IssueSession validates r, signs a user certificate with the session CA,
// records it and returns it.
func (a *Authority) IssueSession(ctx context.Context, r SessionRequest) (*ssh.Certificate, error) {
	cert, err := a.sessionCert(r)
	if err != nil {
		return nil, fmt.Errorf("ca: session certificate: %w", err)
	}
	identity := r.Identity
	if identity == "" {
		identity = r.KeyID
	}
	return a.sign(ctx, KindSession, cert, r.KeyID, identity)
}

func (a *Authority) sessionCert(r SessionRequest) (*ssh.Certificate, error) {
	if err := checkSubjectKey(r.PublicKey, a.keys, false); err != nil {
		return nil, err
	}
	if err := ValidateKeyID(r.KeyID); err != nil {
		return nil, err
	}
	if err := ValidatePrincipal(r.Principal); err != nil {
		return nil, err
	}
	after, before, err := a.validity(r.TTL, maxSessionTTL, defaultSessionSkew)
	if err != nil {
		return nil, err
	}
	perms, err := permissions(r.Permissions, r.ForceCommand, nil)
	if err != nil {
		return nil, err
	}
	return &ssh.Certificate{
		Key:             r.PublicKey,
		CertType:        ssh.UserCert,
		ValidPrincipals: []string{r.Principal},
		ValidAfter:      after,
		ValidBefore:     before,
		Permissions:     perms,
	}, nil
}

// IssueHost validates r, signs a host certificate with the host CA, records
// it and returns it.
func (a *Authority) IssueHost(ctx context.Context, r HostRequest) (*ssh.Certificate, error) {
	cert, err := a.hostCert(r)
	if err != nil {
		return nil, fmt.Errorf("ca: host certificate: %w", err)
	}
	id := "host:" + cert.ValidPrincipals[0]
	return a.sign(ctx, KindHost, cert, id, id)
}

func (a *Authority) hostCert(r HostRequest) (*ssh.Certificate, error) {
	if err := checkSubjectKey(r.PublicKey, a.keys, false); err != nil {
		return nil, err
	}
	if len(r.Hostnames) == 0 {
		return nil, errors.New("at least one host name is required")
	}
	seen := map[string]bool{}
	var names []string
	for _, h := range r.Hostnames {
		if err := ValidateHostname(h); err != nil {
			return nil, err
		}
		h = strings.ToLower(h)
		if !seen[h] {
			seen[h] = true
			names = append(names, h)
		}
	}
	after, before, err := a.validity(r.TTL, r.MaxTTL, a.skew())
	if err != nil {
		return nil, err
	}
	return &ssh.Certificate{
		Key:             r.PublicKey,
		CertType:        ssh.HostCert,
		ValidPrincipals: names,
		ValidAfter:      after,
		ValidBefore:     before,
	}, nil
}

// sign allocates a serial, signs cert with the key of kind k only, checks
// the result, and records it before returning it.
func (a *Authority) sign(ctx context.Context, k Kind, cert *ssh.Certificate, keyID, identity string) (*ssh.Certificate, error) {
	wantType := uint32(ssh.UserCert)
	if k == KindHost {
		wantType = ssh.HostCert
	}
	if cert.CertType != wantType {
		// Unreachable by construction; kept so that no future request type
		// can make one CA sign the other kind.
		return nil, fmt.Errorf("ca: refusing to sign a certificate of type %d with the %s CA", cert.CertType, k)
	}
	signer := a.keys.Signer(k)
	serial, err := a.ledger.NextSerial(ctx)
	if err != nil {
		return nil, fmt.Errorf("ca: allocate serial: %w", err)
	}
	if serial == 0 {
		return nil, errors.New("ca: ledger returned serial 0, which no KRL can revoke")
	}
	cert.Serial = serial
	cert.KeyId = keyID + keyIDSerialSeparator + strconv.FormatUint(serial, 10)
	if err := cert.SignCert(a.rand(), signer); err != nil {
		return nil, fmt.Errorf("ca: sign %s certificate %d: %w", k, serial, err)
	}
	if err := a.ledger.RecordIssued(ctx, cert, identity); err != nil {
		return nil, fmt.Errorf("ca: record %s certificate %d: %w", k, serial, err)
	}
	return cert, nil
}

func checkPrincipals(ps []string) ([]string, error) {
	if len(ps) == 0 {
		return nil, errors.New("at least one principal is required (an empty list would mean any user)")
	}
	seen := map[string]bool{}
	var out []string
	for _, p := range ps {
		if err := ValidatePrincipal(p); err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

func permissions(ps []Permission, forceCommand string, sources []netip.Prefix) (ssh.Permissions, error) {
	var perms ssh.Permissions
	for _, p := range ps {
		ext := p.Extension()
		if ext == "" {
			return ssh.Permissions{}, fmt.Errorf("unknown permission %q", p)
		}
		if perms.Extensions == nil {
			perms.Extensions = map[string]string{}
		}
		perms.Extensions[ext] = ""
	}
	if forceCommand != "" {
		if err := validateForceCommand(forceCommand); err != nil {
			return ssh.Permissions{}, err
		}
		perms.CriticalOptions = map[string]string{criticalForceCommand: forceCommand}
	}
	if len(sources) > 0 {
		var ss []string
		for _, p := range sources {
			if !p.IsValid() || p != p.Masked() {
				return ssh.Permissions{}, fmt.Errorf("source address %s is not a canonical CIDR prefix", p)
			}
			ss = append(ss, p.String())
		}
		sort.Strings(ss)
		if perms.CriticalOptions == nil {
			perms.CriticalOptions = map[string]string{}
		}
		perms.CriticalOptions[criticalSourceAddress] = strings.Join(ss, ",")
	}
	return perms, nil
}
