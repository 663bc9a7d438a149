package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
)

// BatchOptions tunes a Batcher. Zero values mean the defaults shown.
type BatchOptions struct {
	// SerialBlock is how many serials one commit reserves (default 256).
	// Serials reserved but not used before the process stops are skipped,
	// never reused.
	SerialBlock int
	// MaxBatch is the most certificates recorded in one transaction
	// (default 512).
	MaxBatch int
}

// Batcher records issued certificates with group commit, for a server
// issuing many certificates at once. It implements the same contract as
// SQLite.NextSerial and SQLite.RecordIssued (so it can be a ca.Ledger):
// a serial is committed as used before it is returned, and RecordIssued
// returns only after the certificate and its "issue" audit event are
// committed. What it changes is the cost: serials are reserved in blocks,
// and one writer goroutine commits every queued record in a single
// transaction (one fsync) while the next ones queue up behind it. Under load
// a commit thus carries hundreds of certificates; alone, a record is
// committed at once, without waiting for company.
//
// A failure of one record (a duplicate serial, a revoked key) fails only
// that record; a failed commit fails every record in it.
type Batcher struct {
	s    *SQLite
	opts BatchOptions

	mu         sync.Mutex // guards next and end
	next, end  uint64     // serials next..end-1 are reserved and unused
	reserveMu  sync.Mutex // one block reservation at a time
	reqs       chan *batchReq
	closeMu    sync.RWMutex // held for reading while queueing; Close takes it to stop
	closed     bool
	stop       chan struct{}
	done       chan struct{}
	closeOnce  sync.Once
	closeError error
}

type batchReq struct {
	cert     *ssh.Certificate
	identity string
	row      issuedRow
	err      error
	done     chan struct{}
}

// issuedRow is a certificate prepared for insertion.
type issuedRow struct {
	serial     int64
	typ        string
	principals string
	keyFP      string
	caFP       string
	authorized string
	event      audit.Event // without its time, set at commit
	fields     string      // event.Fields as JSON
}

// NewBatcher starts a Batcher writing to s. Close it before closing s.
func (s *SQLite) NewBatcher(opts BatchOptions) *Batcher {
	if opts.SerialBlock <= 0 {
		opts.SerialBlock = 256
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	b := &Batcher{
		s:    s,
		opts: opts,
		reqs: make(chan *batchReq, 4*opts.MaxBatch),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go b.run()
	return b
}

// Close stops the writer after committing what is queued. Later calls to
// RecordIssued fail.
func (b *Batcher) Close() error {
	b.closeOnce.Do(func() {
		b.closeMu.Lock()
		b.closed = true
		b.closeMu.Unlock()
		close(b.stop)
		<-b.done
	})
	return b.closeError
}

// ErrClosed means the Batcher was closed.
var ErrClosed = errors.New("store: batcher closed")

// NextSerial returns a serial from the reserved block, reserving (and
// committing) a new block when the current one is used up.
func (b *Batcher) NextSerial(ctx context.Context) (uint64, error) {
	for {
		b.mu.Lock()
		if b.next < b.end {
			n := b.next
			b.next++
			b.mu.Unlock()
			return n, nil
		}
		b.mu.Unlock()
		if err := b.reserve(ctx); err != nil {
			return 0, err
		}
	}
}

func (b *Batcher) reserve(ctx context.Context) error {
	b.reserveMu.Lock()
	defer b.reserveMu.Unlock()
	b.mu.Lock()
	fresh := b.next < b.end
	b.mu.Unlock()
	if fresh {
		return nil // another caller reserved a block while we waited
	}
	n := int64(b.opts.SerialBlock)
	var last int64
	err := b.s.update(ctx, func(tx *txn) error {
		return tx.QueryRowContext(ctx, `UPDATE serial_counter SET last = last + ? WHERE id = 1 AND last <= ? RETURNING last`, n, int64(math.MaxInt64)-n).Scan(&last)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return errors.New("store: next serial: serials exhausted")
	}
	if err != nil {
		return fmt.Errorf("store: next serial: %w", err)
	}
	b.mu.Lock()
	b.next, b.end = uint64(last-n+1), uint64(last+1)
	b.mu.Unlock()
	return nil
}

// RecordIssued queues cert for the next commit and waits for it.
func (b *Batcher) RecordIssued(ctx context.Context, cert *ssh.Certificate, identity string) error {
	r, err := newBatchReq(cert, identity)
	if err != nil {
		return err
	}
	fail := func(err error) error { return fmt.Errorf("store: record certificate %d: %w", cert.Serial, err) }
	r.done = make(chan struct{})
	b.closeMu.RLock()
	if b.closed {
		b.closeMu.RUnlock()
		return fail(ErrClosed)
	}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		b.closeMu.RUnlock()
		return fail(ctx.Err())
	}
	b.closeMu.RUnlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		// The record may still be committed; the caller just never
		// hands the certificate out, which is safe.
		return fail(ctx.Err())
	}
	if r.err != nil {
		return fail(r.err)
	}
	return nil
}

// newBatchReq checks cert and prepares its record.
func newBatchReq(cert *ssh.Certificate, identity string) (*batchReq, error) {
	if cert == nil {
		return nil, errors.New("store: record certificate: nil certificate")
	}
	fail := func(err error) error { return fmt.Errorf("store: record certificate %d: %w", cert.Serial, err) }
	if err := checkCert(cert); err != nil {
		return nil, fail(err)
	}
	if identity == "" {
		return nil, fail(errors.New("no identity"))
	}
	row, err := prepareRow(cert, identity)
	if err != nil {
		return nil, fail(err)
	}
	return &batchReq{cert: cert, identity: identity, row: row}, nil
}

func prepareRow(cert *ssh.Certificate, identity string) (issuedRow, error) {
	typ := CertTypeUser
	if cert.CertType == ssh.HostCert {
		typ = CertTypeHost
	}
	principals, err := json.Marshal(nonNil(cert.ValidPrincipals))
	if err != nil {
		return issuedRow{}, err
	}
	row := issuedRow{
		serial:     int64(cert.Serial),
		typ:        typ,
		principals: string(principals),
		keyFP:      ssh.FingerprintSHA256(cert.Key),
		caFP:       ssh.FingerprintSHA256(cert.SignatureKey),
		authorized: string(bytes.TrimSpace(ssh.MarshalAuthorizedKey(cert))),
	}
	row.event = audit.Event{
		Type:    audit.TypeIssue,
		Actor:   identity,
		Subject: cert.KeyId,
		Outcome: audit.OutcomeOK,
		Fields: map[string]string{
			"serial":          strconv.FormatUint(cert.Serial, 10),
			"cert_type":       typ,
			"principals":      strings.Join(cert.ValidPrincipals, ","),
			"valid_after":     strconv.FormatUint(cert.ValidAfter, 10),
			"valid_before":    strconv.FormatUint(cert.ValidBefore, 10),
			"key_fingerprint": row.keyFP,
			"ca_fingerprint":  row.caFP,
		},
	}
	fields, err := json.Marshal(row.event.Fields)
	if err != nil {
		return issuedRow{}, err
	}
	row.fields = string(fields)
	return row, nil
}

func (b *Batcher) run() {
	defer close(b.done)
	batch := make([]*batchReq, 0, b.opts.MaxBatch)
	for {
		var first *batchReq
		select {
		case first = <-b.reqs:
		case <-b.stop:
			// Commit whatever was queued before the stop.
			for {
				select {
				case r := <-b.reqs:
					batch = append(batch[:0], r)
					b.commit(batch)
					continue
				default:
				}
				return
			}
		}
		batch = append(batch[:0], first)
	drain:
		for len(batch) < b.opts.MaxBatch {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		b.commit(batch)
	}
}

// commit records batch in one transaction and wakes every waiter. The rows
// go in with one multi-row INSERT per table: per-statement overhead, not
// the B-tree work, dominates the cost of a record.
func (b *Batcher) commit(batch []*batchReq) {
	ctx := context.Background()
	now := b.s.now().UTC()
	err := b.s.update(ctx, func(tx *txn) error {
		for _, r := range batch {
			r.err = nil
		}
		return tx.recordIssued(ctx, batch, now)
	})
	for _, r := range batch {
		if err != nil && (r.err == nil || !errors.Is(err, ErrAuditLog)) {
			// A failed commit fails everyone; after a committed batch
			// whose JSON copy failed, the refusals already set stand and
			// the rest get ErrAuditLog, as RecordIssued would give.
			r.err = err
		}
		close(r.done)
	}
}

// recordIssued records rs in tx: a record whose key or serial is revoked, or
// whose serial is already recorded, gets its own error in r.err; the others
// are inserted with their "issue" audit events, and the serial counter is
// kept ahead of them. A returned error fails the whole transaction.
func (tx *txn) recordIssued(ctx context.Context, batch []*batchReq, now time.Time) error {
	at := formatTime(now)
	revoked, err := tx.revoked(ctx, batch)
	if err != nil {
		return err
	}
	ok := make([]*batchReq, 0, len(batch))
	for _, r := range batch {
		if revoked.keys[r.row.keyFP] {
			r.err = fmt.Errorf("key %s %w", r.row.keyFP, ErrRevoked)
			continue
		}
		if revoked.serials[r.row.serial] {
			r.err = fmt.Errorf("serial %w", ErrRevoked)
			continue
		}
		ok = append(ok, r)
	}
	if len(ok) == 0 {
		return nil
	}
	if err := tx.insertCerts(ctx, ok, at); isConstraint(err) {
		// A duplicate serial somewhere in the batch: fall back to one
		// row at a time so only the offending records fail. (A
		// revoked serial is a recorded one, so it is caught here too.)
		var inserted []*batchReq
		for _, r := range ok {
			err := tx.insertCerts(ctx, []*batchReq{r}, at)
			if isConstraint(err) {
				r.err = fmt.Errorf("%w: %w", ErrDuplicateSerial, err)
				continue
			}
			if err != nil {
				return err
			}
			inserted = append(inserted, r)
		}
		ok = inserted
	} else if err != nil {
		return err
	}
	if len(ok) == 0 {
		return nil
	}
	var maxSerial int64
	for _, r := range ok {
		maxSerial = max(maxSerial, r.row.serial)
	}
	// As in RecordIssued: keep the counter ahead of recorded serials.
	if _, err := tx.ExecContext(ctx, `UPDATE serial_counter SET last = max(last, ?) WHERE id = 1`, maxSerial); err != nil {
		return err
	}
	return tx.auditIssued(ctx, ok, now, at)
}

// maxRowsPerInsert keeps a multi-row INSERT under SQLite's limit on bound
// parameters (32766) with eleven per row.
const maxRowsPerInsert = 1024

// revokedSet is which of a batch's keys and serials are revoked.
type revokedSet struct {
	keys    map[string]bool
	serials map[int64]bool
}

// revoked returns which of the batch's key fingerprints are revoked, and
// which of its serials are revoked without being recorded.
func (tx *txn) revoked(ctx context.Context, batch []*batchReq) (revokedSet, error) {
	set := revokedSet{keys: map[string]bool{}, serials: map[int64]bool{}}
	var fps, serials []any
	seen := map[string]bool{}
	for _, r := range batch {
		if !seen[r.row.keyFP] {
			seen[r.row.keyFP] = true
			fps = append(fps, r.row.keyFP)
		}
		serials = append(serials, r.row.serial)
	}
	if err := tx.matching(ctx, `SELECT key_fingerprint FROM revoked_keys WHERE key_fingerprint IN `, fps, func(rows *sql.Rows) error {
		var fp string
		err := rows.Scan(&fp)
		set.keys[fp] = true
		return err
	}); err != nil {
		return set, err
	}
	// A recorded serial is refused as a duplicate by the insert; this finds
	// revoked serials whose record is gone (a restore from an older backup).
	err := tx.matching(ctx, `SELECT serial FROM revoked_serials r
	WHERE NOT EXISTS (SELECT 1 FROM certificates c WHERE c.serial = r.serial) AND serial IN `, serials, func(rows *sql.Rows) error {
		var n int64
		err := rows.Scan(&n)
		set.serials[n] = true
		return err
	})
	return set, err
}

// matching runs query with an IN list of args, in chunks under SQLite's
// limit on bound parameters, calling scan for every row.
func (tx *txn) matching(ctx context.Context, query string, args []any, scan func(*sql.Rows) error) error {
	for len(args) > 0 {
		chunk := args[:min(len(args), maxRowsPerInsert)]
		args = args[len(chunk):]
		rows, err := tx.QueryContext(ctx, query+`(?`+strings.Repeat(",?", len(chunk)-1)+`)`, chunk...)
		if err != nil {
			return err
		}
		for rows.Next() {
			if err := scan(rows); err != nil {
				rows.Close()
				return err
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
	}
	return nil
}

func (tx *txn) insertCerts(ctx context.Context, rs []*batchReq, at string) error {
	for len(rs) > 0 {
		chunk := rs[:min(len(rs), maxRowsPerInsert)]
		rs = rs[len(chunk):]
		var q strings.Builder
		q.WriteString(`INSERT INTO certificates
	(serial, key_id, cert_type, identity, principals, valid_after, valid_before, key_fingerprint, ca_fingerprint, certificate, issued_at) VALUES `)
		args := make([]any, 0, 11*len(chunk))
		for i, r := range chunk {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString("(?,?,?,?,?,?,?,?,?,?,?)")
			row := r.row
			args = append(args, row.serial, r.cert.KeyId, row.typ, r.identity, row.principals,
				clampTime(r.cert.ValidAfter), clampTime(r.cert.ValidBefore), row.keyFP, row.caFP, row.authorized, at)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// auditIssued inserts the "issue" event of each record, as RecordIssued
// does, and queues them for the JSON copy.
func (tx *txn) auditIssued(ctx context.Context, rs []*batchReq, now time.Time, at string) error {
	for len(rs) > 0 {
		chunk := rs[:min(len(rs), maxRowsPerInsert)]
		rs = rs[len(chunk):]
		var q strings.Builder
		q.WriteString(`INSERT INTO audit_events (time, type, actor, subject, outcome, reason, fields) VALUES `)
		args := make([]any, 0, 7*len(chunk))
		for i, r := range chunk {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString("(?,?,?,?,?,?,?)")
			e := r.row.event
			e.Time = now
			args = append(args, at, e.Type, e.Actor, e.Subject, e.Outcome, e.Reason, r.row.fields)
			tx.events = append(tx.events, e)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("insert audit events: %w", err)
		}
	}
	return nil
}
