// Package store owns Sallyport's durable state: certificate serials, issued
// certificates, revocations, suspended identities, GitHub logins pinned to
// numeric user IDs, and the audit trail.
//
// Callers use the Store interface (or the few of its methods they need); the
// SQLite type is the embedded implementation, and a PostgreSQL one for several
// replicas can implement the same interface without changing callers. Every
// method that changes state commits before it returns, so an answer that
// depends on it (a certificate handed out, a revocation confirmed) is never
// given for something a crash could undo.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
)

// Store is durable state shared by the CA, the web server and the bastion.
// Implementations are safe for concurrent use.
type Store interface {
	// NextSerial allocates a fresh certificate serial: unique, never 0,
	// strictly increasing, committed before it returns, safe under many
	// concurrent callers and across restarts.
	NextSerial(ctx context.Context) (uint64, error)
	// RecordIssued durably records an issued certificate, issued to
	// identity (e.g. "github:12345"), and its "issue" audit event in one
	// transaction. It fails with ErrDuplicateSerial if the serial is already
	// recorded, with ErrRevoked if the serial or the certificate's key is
	// revoked, and with ErrSuspended (a *SuspendedError) if a suspension
	// covers identity (see SuspensionSubject); the caller must then not
	// hand the certificate out.
	RecordIssued(ctx context.Context, cert *ssh.Certificate, identity string) error
	// Revoke durably records a revocation and its "revoke" audit event in
	// one transaction. Revoking by key also revokes the serial of every
	// certificate recorded for that key. Revoking what is already revoked
	// is not an error (the first revocation's reason and time are kept) but
	// is audited. Revoking a serial no certificate was recorded with fails
	// with ErrNotFound.
	Revoke(ctx context.Context, r Revocation) error
	// Revocations lists every revocation, oldest first. Each has either a
	// Serial or a Key, never both.
	Revocations(ctx context.Context) ([]Revocation, error)
	// Certificates lists recorded certificates matching f, highest (newest)
	// serial first.
	Certificates(ctx context.Context, f CertificateFilter) ([]Certificate, error)
	// Audit appends an event, committed before it returns. A zero Time is
	// set to the store's clock; Type, Actor and Outcome are required.
	Audit(ctx context.Context, e audit.Event) error
	// AuditEvents lists events matching q, newest (last committed) first.
	AuditEvents(ctx context.Context, q AuditQuery) ([]audit.Event, error)
	// Close releases the store's resources.
	Close() error
}

var (
	// ErrNotFound means the thing named does not exist.
	ErrNotFound = errors.New("not found")
	// ErrDuplicateSerial means a certificate with the same serial is already
	// recorded.
	ErrDuplicateSerial = errors.New("serial already recorded")
	// ErrRevoked means the certificate's serial or key is revoked.
	ErrRevoked = errors.New("revoked")
	// ErrSchemaTooNew means the database was migrated by a newer Sallyport
	// than this one; it is refused rather than misread.
	ErrSchemaTooNew = errors.New("database schema is newer than this binary supports")
	// ErrAuditLog means a change was committed, but copying its audit
	// events to Options.AuditLog failed. The change stands and its events
	// are in the database.
	ErrAuditLog = errors.New("audit log write failed")
)

// Certificate types, as in Certificate.Type.
const (
	CertTypeUser = "user"
	CertTypeHost = "host"
)

// Certificate is the record of one issued certificate.
type Certificate struct {
	Serial     uint64
	KeyID      string
	Type       string // CertTypeUser or CertTypeHost
	Identity   string // who it was issued to, e.g. "github:12345"
	Principals []string
	// ValidAfter and ValidBefore are Unix seconds as in ssh.Certificate;
	// ssh.CertTimeInfinity means no bound.
	ValidAfter  uint64
	ValidBefore uint64
	// KeyFingerprint is ssh.FingerprintSHA256 of the certified key.
	KeyFingerprint string
	// CAFingerprint is ssh.FingerprintSHA256 of the signing CA key.
	CAFingerprint string
	// AuthorizedKey is the whole certificate in authorized_keys format,
	// without a trailing newline.
	AuthorizedKey string
	IssuedAt      time.Time
}

// Cert parses the stored certificate.
func (c Certificate) Cert() (*ssh.Certificate, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.AuthorizedKey))
	if err != nil {
		return nil, fmt.Errorf("store: parse certificate %d: %w", c.Serial, err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("store: parse certificate %d: stored key is a %s, not a certificate", c.Serial, pub.Type())
	}
	return cert, nil
}

// CertificateFilter selects certificates. Each zero field selects all.
type CertificateFilter struct {
	Serial         uint64 // 0: any serial
	KeyFingerprint string // ssh.FingerprintSHA256 of the certified key; "": any key
	Identity       string // "": any identity
	Limit          int    // at most this many; 0: no limit
}

// Revocation revokes a certificate serial, a public key, or both.
type Revocation struct {
	// Serial revokes the certificate with this serial; 0 means none.
	Serial uint64
	// Key revokes every certificate of this public key (not a certificate
	// itself); nil means none.
	Key ssh.PublicKey
	// Reason says why, in plain words.
	Reason string
	// Actor is who revoked, e.g. "github:12345"; required.
	Actor string
	// Time is when; zero means the store's clock.
	Time time.Time
}

// AuditQuery selects audit events. Each zero field selects all.
type AuditQuery struct {
	Type    string    // "": any type
	Actor   string    // "": any actor
	Subject string    // "": any subject
	Since   time.Time // events at or after this time; zero: any time
	Limit   int       // at most this many, newest first; 0: no limit
}
