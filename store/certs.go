package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
)

// RecordIssued records an issued certificate and its "issue" audit event.
// It is a batch of one for the same code the Batcher commits with.
func (s *SQLite) RecordIssued(ctx context.Context, cert *ssh.Certificate, identity string) error {
	r, err := newBatchReq(cert, identity)
	if err != nil {
		return err
	}
	fail := func(err error) error { return fmt.Errorf("store: record certificate %d: %w", cert.Serial, err) }
	err = s.update(ctx, func(tx *txn) error {
		r.err = nil
		return tx.recordIssued(ctx, []*batchReq{r}, s.now().UTC())
	})
	if err == nil {
		err = r.err
	}
	if err != nil {
		return fail(err)
	}
	return nil
}

// checkCert reports what makes cert unfit to record.
func checkCert(cert *ssh.Certificate) error {
	switch {
	case cert.Serial == 0:
		return errors.New("serial 0 is reserved")
	case cert.Serial > math.MaxInt64:
		return errors.New("serial above 2^63-1")
	case cert.CertType != ssh.UserCert && cert.CertType != ssh.HostCert:
		return fmt.Errorf("unknown certificate type %d", cert.CertType)
	case cert.Key == nil:
		return errors.New("no certified key")
	case cert.SignatureKey == nil || cert.Signature == nil:
		return errors.New("certificate is not signed")
	}
	return nil
}

// clampTime maps an ssh.Certificate time to a signed SQL integer: every value
// from 2^63-1 up, ssh.CertTimeInfinity among them, is stored as 2^63-1 and
// read back as ssh.CertTimeInfinity.
func clampTime(t uint64) int64 {
	if t >= math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(t)
}

func unclampTime(t int64) uint64 {
	if t == math.MaxInt64 {
		return ssh.CertTimeInfinity
	}
	return uint64(t)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Certificates lists recorded certificates matching f, highest serial first.
func (s *SQLite) Certificates(ctx context.Context, f CertificateFilter) ([]Certificate, error) {
	if f.Limit < 0 {
		return nil, fmt.Errorf("store: certificates: negative limit %d", f.Limit)
	}
	if f.Serial > math.MaxInt64 {
		return nil, nil // never recorded
	}
	var where []string
	var args []any
	if f.Serial != 0 {
		where = append(where, "serial = ?")
		args = append(args, int64(f.Serial))
	}
	if f.KeyFingerprint != "" {
		where = append(where, "key_fingerprint = ?")
		args = append(args, f.KeyFingerprint)
	}
	if f.Identity != "" {
		where = append(where, "identity = ?")
		args = append(args, f.Identity)
	}
	query := `SELECT serial, key_id, cert_type, identity, principals, valid_after, valid_before, key_fingerprint, ca_fingerprint, certificate, issued_at
	FROM certificates` + whereClause(where) + ` ORDER BY serial DESC`
	if f.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: certificates: %w", err)
	}
	defer rows.Close()
	var certs []Certificate
	for rows.Next() {
		var c Certificate
		var serial, after, before int64
		var principals, issued string
		if err := rows.Scan(&serial, &c.KeyID, &c.Type, &c.Identity, &principals, &after, &before,
			&c.KeyFingerprint, &c.CAFingerprint, &c.AuthorizedKey, &issued); err != nil {
			return nil, fmt.Errorf("store: certificates: %w", err)
		}
		c.Serial, c.ValidAfter, c.ValidBefore = uint64(serial), unclampTime(after), unclampTime(before)
		if err := json.Unmarshal([]byte(principals), &c.Principals); err != nil {
			return nil, fmt.Errorf("store: certificates: serial %d: principals: %w", serial, err)
		}
		if c.IssuedAt, err = parseTime(issued); err != nil {
			return nil, fmt.Errorf("store: certificates: serial %d: %w", serial, err)
		}
		certs = append(certs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: certificates: %w", err)
	}
	return certs, nil
}

// Revoke records a revocation and its "revoke" audit event.
func (s *SQLite) Revoke(ctx context.Context, r Revocation) error {
	var what []string
	if r.Serial != 0 {
		what = append(what, "serial "+strconv.FormatUint(r.Serial, 10))
	}
	var keyFP string
	if r.Key != nil {
		keyFP = ssh.FingerprintSHA256(r.Key)
		what = append(what, "key "+keyFP)
	}
	fail := func(err error) error {
		if len(what) == 0 {
			return fmt.Errorf("store: revoke: %w", err)
		}
		return fmt.Errorf("store: revoke %s: %w", strings.Join(what, " and "), err)
	}
	switch {
	case len(what) == 0:
		return fail(errors.New("neither serial nor key given"))
	case r.Serial > math.MaxInt64:
		return fail(ErrNotFound) // never recorded
	case r.Actor == "":
		return fail(errors.New("no actor"))
	}
	if c, ok := r.Key.(*ssh.Certificate); ok {
		return fail(fmt.Errorf("key is a certificate; revoke its serial %d or its key %s", c.Serial, ssh.FingerprintSHA256(c.Key)))
	}
	at := r.Time
	if at.IsZero() {
		at = s.now()
	}
	at = at.UTC()

	err := s.update(ctx, func(tx *txn) error {
		fields := map[string]string{}
		subject := keyFP
		fresh := false
		if r.Serial != 0 {
			subject = strconv.FormatUint(r.Serial, 10)
			fields["serial"] = subject
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM certificates WHERE serial = ?`, int64(r.Serial)).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				// Refused rather than stored: a serial not yet issued would
				// be allocated later and its certificate born revoked.
				return fmt.Errorf("no certificate recorded with this serial: %w", ErrNotFound)
			}
			added, err := tx.revokeSerial(int64(r.Serial), r.Reason, r.Actor, at)
			if err != nil {
				return err
			}
			fresh = fresh || added
		}
		if r.Key != nil {
			added, err := tx.revokeKey(r.Key, keyFP, r.Reason, r.Actor, at, fields)
			if err != nil {
				return err
			}
			fresh = fresh || added
		}
		if !fresh {
			fields["already_revoked"] = "true"
		}
		return tx.audit(audit.Event{
			Time:    at,
			Type:    audit.TypeRevoke,
			Actor:   r.Actor,
			Subject: subject,
			Outcome: audit.OutcomeOK,
			Reason:  r.Reason,
			Fields:  fields,
		})
	})
	if err != nil {
		return fail(err)
	}
	return nil
}

// revokeSerial revokes serial unless it already is, reporting whether it
// added a revocation.
func (tx *txn) revokeSerial(serial int64, reason, actor string, at time.Time) (bool, error) {
	res, err := tx.ExecContext(tx.ctx, `INSERT INTO revoked_serials (serial, reason, actor, revoked_at)
	VALUES (?, ?, ?, ?) ON CONFLICT (serial) DO NOTHING`, serial, reason, actor, formatTime(at))
	if err != nil {
		return false, fmt.Errorf("insert revocation of serial %d: %w", serial, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	return n > 0, nil
}

// revokeKey revokes key (whose fingerprint is keyFP) and the serial of
// every certificate recorded for it, unless they already are, noting in
// fields what it did for the audit event; it reports whether it added a
// revocation.
func (tx *txn) revokeKey(key ssh.PublicKey, keyFP, reason, actor string, at time.Time, fields map[string]string) (bool, error) {
	fields["key_fingerprint"] = keyFP
	res, err := tx.ExecContext(tx.ctx, `INSERT INTO revoked_keys (key_fingerprint, key_blob, reason, actor, revoked_at)
	VALUES (?, ?, ?, ?, ?) ON CONFLICT (key_fingerprint) DO NOTHING`, keyFP, key.Marshal(), reason, actor, formatTime(at))
	if err != nil {
		return false, fmt.Errorf("insert key revocation: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	fresh := n > 0
	serials, err := tx.serialsOfKey(keyFP)
	if err != nil {
		return false, err
	}
	var revoked []string
	for _, serial := range serials {
		added, err := tx.revokeSerial(serial, reason, actor, at)
		if err != nil {
			return false, err
		}
		if added {
			fresh = true
			revoked = append(revoked, strconv.FormatInt(serial, 10))
		}
	}
	if len(revoked) > 0 {
		fields["revoked_serials"] = strings.Join(revoked, ",")
	}
	return fresh, nil
}

func (tx *txn) serialsOfKey(keyFP string) ([]int64, error) {
	rows, err := tx.QueryContext(tx.ctx, `SELECT serial FROM certificates WHERE key_fingerprint = ? ORDER BY serial`, keyFP)
	if err != nil {
		return nil, fmt.Errorf("certificates of key: %w", err)
	}
	defer rows.Close()
	var serials []int64
	for rows.Next() {
		var serial int64
		if err := rows.Scan(&serial); err != nil {
			return nil, fmt.Errorf("certificates of key: %w", err)
		}
		serials = append(serials, serial)
	}
	return serials, rows.Err()
}

// Revocations lists every revocation, oldest first.
func (s *SQLite) Revocations(ctx context.Context) ([]Revocation, error) {
	rows, err := s.db.QueryContext(ctx, `
SELECT revoked_at, 0 AS kind, 0 AS serial, key_blob, reason, actor FROM revoked_keys
UNION ALL
SELECT revoked_at, 1 AS kind, serial, NULL, reason, actor FROM revoked_serials
ORDER BY revoked_at, kind, serial`)
	if err != nil {
		return nil, fmt.Errorf("store: revocations: %w", err)
	}
	defer rows.Close()
	var revs []Revocation
	for rows.Next() {
		var r Revocation
		var at string
		var kind, serial int64
		var blob []byte
		if err := rows.Scan(&at, &kind, &serial, &blob, &r.Reason, &r.Actor); err != nil {
			return nil, fmt.Errorf("store: revocations: %w", err)
		}
		if r.Time, err = parseTime(at); err != nil {
			return nil, fmt.Errorf("store: revocations: %w", err)
		}
		if kind == 0 {
			if r.Key, err = ssh.ParsePublicKey(blob); err != nil {
				return nil, fmt.Errorf("store: revocations: stored key: %w", err)
			}
		} else {
			r.Serial = uint64(serial)
		}
		revs = append(revs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: revocations: %w", err)
	}
	return revs, nil
}

// IdentityRevocation is what RevokeIdentity did.
type IdentityRevocation struct {
	// Certificates is how many certificates the user CA (any CA but the
	// session CA) issued to the identity; every one of them is now
	// revoked.
	Certificates int
	// Keys is how many distinct keys those certificates certified; each
	// is revoked, and with it every certificate of it, now and later.
	Keys int
	// Sessions is how many session certificates the bastion had minted
	// for the identity's connections to targets; they are left as they
	// are (see RevokeIdentity).
	Sessions int
}

// RevokeIdentity revokes, in one transaction, the key of every certificate
// recorded for identity (and so every certificate of those keys, now and
// later), with a "revoke" audit event per key, by actor with reason.
//
// Certificates signed by the session CA, whose fingerprint
// (ssh.FingerprintSHA256) is sessionCA, are left alone: the bastion
// records each session certificate it mints for a connection to a target
// under the identity of the person connecting, but each certifies a
// one-minute key of the bastion's own, used once; revoking those keys
// would only bloat the revocation list, and the suspension that comes
// with revoking everything ends the sessions. sessionCA "" leaves no
// certificate alone.
//
// An error matching ErrAuditLog means everything was revoked but the JSON
// copy of some audit events failed. A key already revoked is counted and
// audited again.
func (s *SQLite) RevokeIdentity(ctx context.Context, identity, sessionCA, reason, actor string) (IdentityRevocation, error) {
	var done IdentityRevocation
	fail := func(err error) (IdentityRevocation, error) {
		return IdentityRevocation{}, fmt.Errorf("store: revoke everything of %s: %w", identity, err)
	}
	switch {
	case identity == "":
		return fail(errors.New("no identity"))
	case actor == "":
		return fail(errors.New("no actor"))
	}
	at := s.now().UTC()
	err := s.update(ctx, func(tx *txn) error {
		done = IdentityRevocation{}
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM certificates WHERE identity = ? AND ca_fingerprint = ?`,
			identity, sessionCA).Scan(&done.Sessions); err != nil {
			return fmt.Errorf("session certificates: %w", err)
		}
		keys, err := tx.keysOfIdentity(identity, sessionCA, &done.Certificates)
		if err != nil {
			return err
		}
		for _, k := range keys {
			fields := map[string]string{"identity": identity}
			fresh, err := tx.revokeKey(k.key, k.fp, reason, actor, at, fields)
			if err != nil {
				return err
			}
			if !fresh {
				fields["already_revoked"] = "true"
			}
			if err := tx.audit(audit.Event{Time: at, Type: audit.TypeRevoke, Actor: actor, Subject: k.fp,
				Outcome: audit.OutcomeOK, Reason: reason, Fields: fields}); err != nil {
				return err
			}
		}
		done.Keys = len(keys)
		return nil
	})
	if err != nil && !errors.Is(err, ErrAuditLog) {
		return fail(err)
	}
	if err != nil {
		return done, fmt.Errorf("store: revoke everything of %s: %w", identity, err)
	}
	return done, nil
}

type certifiedKey struct {
	key ssh.PublicKey
	fp  string
}

// keysOfIdentity returns the distinct keys of the certificates recorded
// for identity by any CA but the one with fingerprint skipCA, oldest
// first, counting those certificates in *certs.
func (tx *txn) keysOfIdentity(identity, skipCA string, certs *int) ([]certifiedKey, error) {
	rows, err := tx.QueryContext(tx.ctx, `SELECT serial, key_fingerprint, certificate FROM certificates
	WHERE identity = ? AND ca_fingerprint <> ? ORDER BY serial`, identity, skipCA)
	if err != nil {
		return nil, fmt.Errorf("certificates of identity: %w", err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	var keys []certifiedKey
	for rows.Next() {
		var c Certificate
		if err := rows.Scan(&c.Serial, &c.KeyFingerprint, &c.AuthorizedKey); err != nil {
			return nil, fmt.Errorf("certificates of identity: %w", err)
		}
		*certs++
		if seen[c.KeyFingerprint] {
			continue
		}
		seen[c.KeyFingerprint] = true
		cert, err := c.Cert()
		if err != nil {
			return nil, err
		}
		keys = append(keys, certifiedKey{key: cert.Key, fp: c.KeyFingerprint})
	}
	return keys, rows.Err()
}
