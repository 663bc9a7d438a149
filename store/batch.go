package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// MaxDelay is the longest the writer holds a batch open for more
	// records while they keep arriving, less than MaxDelay/8 apart
	// (default 2ms; negative: never). A record that arrives alone, while
	// no other certificate is being signed, is committed at once. Under
	// load, fewer and larger commits cost less CPU per certificate than
	// the wait costs in latency.
	MaxDelay time.Duration
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
// committed at once, without waiting for company. The writer also reserves
// the next block of serials in a batch's transaction before the current
// block runs out, so issuance does not stall on a reservation of its own.
//
// A failure of one record (a duplicate serial, a revoked key) fails only
// that record; a failed commit fails every record in it.
type Batcher struct {
	s    *SQLite
	opts BatchOptions

	mu         sync.Mutex // guards next, end, spareNext and spareEnd
	next, end  uint64     // serials next..end-1 are reserved and unused
	spareNext  uint64     // spareNext..spareEnd-1: a further reserved block,
	spareEnd   uint64     // committed by the writer, used once next..end is
	reserveMu  sync.Mutex // one block reservation at a time
	reqs       chan *batchReq
	closeMu    sync.RWMutex // held for reading while queueing; Close takes it to stop
	closed     bool
	stop       chan struct{}
	done       chan struct{}
	closeOnce  sync.Once
	closeError error
	stmts      stmtCache // the writer's own

	// signing counts serials handed out whose certificate has not been
	// queued yet: records the writer may expect shortly. A serial that
	// is never recorded leaves it high, which costs only some waiting.
	signing atomic.Int64
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
	principals string // JSON array
	keyFP      string
	caFP       string
	authorized string
	fields     string // the "issue" event's fields as JSON
}

// NewBatcher starts a Batcher writing to s. Close it before closing s.
func (s *SQLite) NewBatcher(opts BatchOptions) *Batcher {
	if opts.SerialBlock <= 0 {
		opts.SerialBlock = 256
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.MaxDelay == 0 {
		opts.MaxDelay = 2 * time.Millisecond
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
		b.takeSpare()
		if b.next < b.end {
			n := b.next
			b.next++
			b.mu.Unlock()
			b.signing.Add(1)
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
	b.takeSpare()
	fresh := b.next < b.end
	b.mu.Unlock()
	if fresh {
		return nil // another caller (or the writer) reserved a block while we waited
	}
	var first, end uint64
	err := b.s.update(ctx, func(tx *txn) (err error) {
		first, end, err = tx.reserveSerials(ctx, b.opts.SerialBlock)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: next serial: %w", err)
	}
	b.mu.Lock()
	b.next, b.end = first, end
	b.mu.Unlock()
	return nil
}

// takeSpare makes the spare block current once the current one is used up.
// b.mu must be held.
func (b *Batcher) takeSpare() {
	if b.next >= b.end && b.spareNext < b.spareEnd {
		b.next, b.end = b.spareNext, b.spareEnd
		b.spareNext, b.spareEnd = 0, 0
	}
}

var errSerialsExhausted = errors.New("serials exhausted")

// reserveSerials moves the serial counter n ahead in tx and returns the
// serials first..end-1 it reserved.
func (tx *txn) reserveSerials(ctx context.Context, n int) (first, end uint64, err error) {
	var last int64
	err = tx.QueryRowContext(ctx, `UPDATE serial_counter SET last = last + ? WHERE id = 1 AND last <= ? RETURNING last`, n, int64(math.MaxInt64)-int64(n)).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, errSerialsExhausted
	}
	if err != nil {
		return 0, 0, err
	}
	return uint64(last - int64(n) + 1), uint64(last + 1), nil
}

// RecordIssued queues cert for the next commit and waits for it.
func (b *Batcher) RecordIssued(ctx context.Context, cert *ssh.Certificate, identity string) error {
	b.signing.Add(-1)
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
	row := issuedRow{
		serial:     int64(cert.Serial),
		typ:        typ,
		principals: string(appendJSONStrings(nil, nonNil(cert.ValidPrincipals))),
		keyFP:      ssh.FingerprintSHA256(cert.Key),
		caFP:       ssh.FingerprintSHA256(cert.SignatureKey),
		// What ssh.MarshalAuthorizedKey writes, without its newline and
		// with fewer copies.
		authorized: cert.Type() + " " + base64.StdEncoding.EncodeToString(cert.Marshal()),
	}
	// The bytes json.Marshal gives for issueFields, written directly: this
	// runs for every certificate, and reflection over a map would cost
	// more than the rest of the row.
	f := make([]byte, 0, 256+len(row.principals))
	for i, kv := range issueFields(cert, row) {
		if i == 0 {
			f = append(f, '{')
		} else {
			f = append(f, ',')
		}
		f = appendJSONString(f, kv[0])
		f = append(f, ':')
		f = appendJSONString(f, kv[1])
	}
	row.fields = string(append(f, '}'))
	return row, nil
}

// issueFields are the fields of the "issue" event of a row, sorted by name
// as encoding/json sorts a map.
func issueFields(cert *ssh.Certificate, row issuedRow) [7][2]string {
	return [...][2]string{
		{"ca_fingerprint", row.caFP},
		{"cert_type", row.typ},
		{"key_fingerprint", row.keyFP},
		{"principals", strings.Join(cert.ValidPrincipals, ",")},
		{"serial", strconv.FormatUint(cert.Serial, 10)},
		{"valid_after", strconv.FormatUint(cert.ValidAfter, 10)},
		{"valid_before", strconv.FormatUint(cert.ValidBefore, 10)},
	}
}

// issueEvent is the "issue" audit event of r at now.
func issueEvent(r *batchReq, now time.Time) audit.Event {
	fields := map[string]string{}
	for _, kv := range issueFields(r.cert, r.row) {
		fields[kv[0]] = kv[1]
	}
	return audit.Event{
		Time:    now,
		Type:    audit.TypeIssue,
		Actor:   r.identity,
		Subject: r.cert.KeyId,
		Outcome: audit.OutcomeOK,
		Fields:  fields,
	}
}

// appendJSONStrings appends ss as json.Marshal encodes it.
func appendJSONStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, s)
	}
	return append(dst, ']')
}

// appendJSONString appends s as json.Marshal encodes it: quoted, unchanged
// when it is printable ASCII without characters encoding/json escapes, and
// encoded by encoding/json otherwise.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always encodes
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

func (b *Batcher) run() {
	defer close(b.done)
	defer b.stmts.close()
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
		if b.opts.MaxDelay > 0 && (len(batch) > 1 || b.signing.Load() > 0) {
			batch = b.linger(batch)
		}
		b.commit(batch)
	}
}

// linger adds to batch the records that keep arriving, each within
// MaxDelay/8 of the one before, for at most MaxDelay.
func (b *Batcher) linger(batch []*batchReq) []*batchReq {
	deadline := time.Now().Add(b.opts.MaxDelay)
	gap := b.opts.MaxDelay / 8
	t := time.NewTimer(gap)
	defer t.Stop()
	for len(batch) < b.opts.MaxBatch {
		select {
		case r := <-b.reqs:
			batch = append(batch, r)
			t.Reset(min(gap, time.Until(deadline)))
		case <-t.C:
			return batch
		case <-b.stop:
			return batch
		}
	}
	return batch
}

// commit records batch in one transaction, with statements prepared once
// (see recordBatch), and wakes every waiter.
func (b *Batcher) commit(batch []*batchReq) {
	ctx := context.Background()
	now := b.s.now().UTC()
	b.mu.Lock()
	needSpare := b.spareNext >= b.spareEnd
	b.mu.Unlock()
	var spareNext, spareEnd uint64
	err := b.s.update(ctx, func(tx *txn) error {
		for _, r := range batch {
			r.err = nil
		}
		if err := tx.recordBatch(ctx, batch, now, &b.stmts); err != nil {
			return err
		}
		if !needSpare {
			return nil
		}
		// Reserving here, after the records (whose serials it stays
		// above), costs one statement in a commit that happens anyway.
		var err error
		spareNext, spareEnd, err = tx.reserveSerials(ctx, b.opts.SerialBlock)
		if err != nil {
			spareNext, spareEnd = 0, 0
			if errors.Is(err, errSerialsExhausted) {
				return nil // NextSerial will say so; the records stand
			}
			return fmt.Errorf("reserve serials: %w", err)
		}
		return nil
	})
	if spareNext < spareEnd && (err == nil || errors.Is(err, ErrAuditLog)) {
		b.mu.Lock()
		if b.spareNext >= b.spareEnd {
			b.spareNext, b.spareEnd = spareNext, spareEnd
		}
		b.mu.Unlock()
	}
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
	return tx.recordBatch(ctx, batch, now, nil)
}

// recordBatch is recordIssued with the writer's prepared statements.
//
// Certificates go in one row per statement, so that a duplicate serial
// fails only its record, and because SQLite gives a multi-row INSERT that
// sets an INTEGER PRIMARY KEY a statement journal: a copy of every page
// the statement changes, in case it has to undo it, which costs more than
// the statements saved. Audit events, whose key SQLite assigns, go in
// several rows per statement.
func (tx *txn) recordBatch(ctx context.Context, batch []*batchReq, now time.Time, stmts *stmtCache) error {
	at := formatTime(now)
	revoked, err := tx.revoked(ctx, batch, stmts)
	if err != nil {
		return err
	}
	suspended, err := tx.suspended(ctx, batch, stmts)
	if err != nil {
		return err
	}
	ok := make([]*batchReq, 0, len(batch))
	for _, r := range batch {
		if sp, found := suspended[SuspensionSubject(r.identity)]; found {
			r.err = &SuspendedError{Identity: r.identity, Suspension: sp}
			continue
		}
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
	// A revoked serial is a recorded one, so a duplicate serial catches it
	// too.
	st, err := stmts.stmt(ctx, tx, stmtInsertCert, 1)
	if err != nil {
		return err
	}
	inserted := ok[:0]
	for _, r := range ok {
		row := r.row
		_, err := st.ExecContext(ctx, row.serial, r.cert.KeyId, row.typ, r.identity, row.principals,
			clampTime(r.cert.ValidAfter), clampTime(r.cert.ValidBefore), row.keyFP, row.caFP, row.authorized, at)
		if isConstraint(err) {
			r.err = fmt.Errorf("%w: %w", ErrDuplicateSerial, err)
			continue
		}
		if err != nil {
			st.Close()
			return err
		}
		inserted = append(inserted, r)
	}
	st.Close()
	ok = inserted
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
	return tx.auditIssued(ctx, ok, now, at, stmts)
}

// maxRowsPerInsert keeps a multi-row INSERT or IN list under SQLite's
// limit on bound parameters (32766); it is a power of two (see chunkLen).
const maxRowsPerInsert = 1024

// chunkLen is how many of n rows the next statement takes: the largest power
// of two not above n or maxRowsPerInsert, so that the statements of every
// batch come in a few shapes, each prepared once.
func chunkLen(n int) int {
	c := 1
	for c*2 <= n && c*2 <= maxRowsPerInsert {
		c *= 2
	}
	return c
}

// stmtCache keeps the writer's statements prepared from one transaction to
// the next, by shape: SQLite takes about as long to prepare a multi-row
// INSERT as to run it. The zero value is ready; a nil *stmtCache prepares
// every statement afresh.
type stmtCache struct {
	m map[stmtKey]*sql.Stmt
}

type stmtKey struct {
	kind stmtKind
	rows int
}

type stmtKind int

const (
	stmtInsertCert stmtKind = iota
	stmtInsertAudit
	stmtRevokedKeys
	stmtRevokedSerials
	stmtSuspended
)

// query returns the statement of kind for n rows.
func (k stmtKind) query(n int) string {
	var q strings.Builder
	switch k {
	case stmtInsertCert:
		q.WriteString(`INSERT INTO certificates
	(serial, key_id, cert_type, identity, principals, valid_after, valid_before, key_fingerprint, ca_fingerprint, certificate, issued_at)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	case stmtInsertAudit:
		// OR FAIL rather than the default ABORT spares the statement
		// journal: a failure here fails the whole transaction anyway.
		// (Parameters are plain "?": SQLite looks numbered ones up by a
		// linear search each.)
		q.WriteString(`INSERT OR FAIL INTO audit_events (time, type, actor, subject, outcome, reason, fields) VALUES (?,?,?,?,?,?,?)`)
		for range n - 1 {
			q.WriteString(",(?,?,?,?,?,?,?)")
		}
	case stmtRevokedKeys:
		q.WriteString(`SELECT key_fingerprint FROM revoked_keys WHERE key_fingerprint IN (?` + strings.Repeat(",?", n-1) + `)`)
	case stmtRevokedSerials:
		// A recorded serial is refused as a duplicate by the insert; this
		// finds revoked serials whose record is gone (a restore from an
		// older backup).
		q.WriteString(`SELECT serial FROM revoked_serials r
	WHERE NOT EXISTS (SELECT 1 FROM certificates c WHERE c.serial = r.serial) AND serial IN (?` + strings.Repeat(",?", n-1) + `)`)
	case stmtSuspended:
		q.WriteString(`SELECT subject, reason, actor, suspended_at FROM suspensions WHERE subject IN (?` + strings.Repeat(",?", n-1) + `)`)
	}
	return q.String()
}

// stmt returns the statement of kind for n rows, bound to tx.
func (c *stmtCache) stmt(ctx context.Context, tx *txn, kind stmtKind, n int) (*sql.Stmt, error) {
	if c == nil {
		return tx.PrepareContext(ctx, kind.query(n))
	}
	k := stmtKey{kind, n}
	st := c.m[k]
	if st == nil {
		var err error
		if st, err = tx.s.db.PrepareContext(ctx, kind.query(n)); err != nil {
			return nil, err
		}
		if c.m == nil {
			c.m = map[stmtKey]*sql.Stmt{}
		}
		c.m[k] = st
	}
	return tx.StmtContext(ctx, st), nil
}

func (c *stmtCache) close() {
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// revokedSet is which of a batch's keys and serials are revoked.
type revokedSet struct {
	keys    map[string]bool
	serials map[int64]bool
}

// revoked returns which of the batch's key fingerprints are revoked, and
// which of its serials are revoked without being recorded.
func (tx *txn) revoked(ctx context.Context, batch []*batchReq, stmts *stmtCache) (revokedSet, error) {
	set := revokedSet{keys: map[string]bool{}, serials: map[int64]bool{}}
	fps := make([]any, 0, len(batch))
	serials := make([]any, 0, len(batch))
	seen := make(map[string]bool, len(batch))
	for _, r := range batch {
		if !seen[r.row.keyFP] {
			seen[r.row.keyFP] = true
			fps = append(fps, r.row.keyFP)
		}
		serials = append(serials, r.row.serial)
	}
	if err := tx.matching(ctx, stmtRevokedKeys, fps, stmts, func(rows *sql.Rows) error {
		var fp string
		err := rows.Scan(&fp)
		set.keys[fp] = true
		return err
	}); err != nil {
		return set, err
	}
	err := tx.matching(ctx, stmtRevokedSerials, serials, stmts, func(rows *sql.Rows) error {
		var n int64
		err := rows.Scan(&n)
		set.serials[n] = true
		return err
	})
	return set, err
}

// suspended returns the suspensions covering the batch's identities, by
// subject.
func (tx *txn) suspended(ctx context.Context, batch []*batchReq, stmts *stmtCache) (map[string]Suspension, error) {
	set := map[string]Suspension{}
	subjects := make([]any, 0, 1)
	seen := map[string]bool{}
	for _, r := range batch {
		if sub := SuspensionSubject(r.identity); !seen[sub] {
			seen[sub] = true
			subjects = append(subjects, sub)
		}
	}
	err := tx.matching(ctx, stmtSuspended, subjects, stmts, func(rows *sql.Rows) error {
		sp, err := scanSuspension(rows)
		if err != nil {
			return err
		}
		set[sp.Subject] = sp
		return nil
	})
	return set, err
}

// matching runs the query of kind with an IN list of args, in chunks under
// SQLite's limit on bound parameters, calling scan for every row. Each
// chunk is padded to a power of two by repeating its last value, which
// changes nothing in an IN list and keeps the shapes few.
func (tx *txn) matching(ctx context.Context, kind stmtKind, args []any, stmts *stmtCache, scan func(*sql.Rows) error) error {
	for len(args) > 0 {
		chunk := args[:min(len(args), maxRowsPerInsert)]
		args = args[len(chunk):]
		if n := chunkLen(len(chunk)); n < len(chunk) {
			n *= 2
			for len(chunk) < n {
				chunk = append(chunk, chunk[len(chunk)-1])
			}
		}
		st, err := stmts.stmt(ctx, tx, kind, len(chunk))
		if err != nil {
			return err
		}
		rows, err := st.QueryContext(ctx, chunk...)
		if err != nil {
			st.Close()
			return err
		}
		for rows.Next() {
			if err := scan(rows); err != nil {
				rows.Close()
				st.Close()
				return err
			}
		}
		err = rows.Close()
		st.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// auditIssued inserts the "issue" event of each record, as RecordIssued
// does, and queues them for the JSON copy.
func (tx *txn) auditIssued(ctx context.Context, rs []*batchReq, now time.Time, at string, stmts *stmtCache) error {
	for len(rs) > 0 {
		chunk := rs[:chunkLen(len(rs))]
		rs = rs[len(chunk):]
		args := make([]any, 0, 7*len(chunk))
		for _, r := range chunk {
			args = append(args, at, audit.TypeIssue, r.identity, r.cert.KeyId, audit.OutcomeOK, "", r.row.fields)
		}
		if err := stmts.exec(ctx, tx, stmtInsertAudit, len(chunk), args); err != nil {
			return fmt.Errorf("insert audit events: %w", err)
		}
		if tx.s.log != nil {
			for _, r := range chunk {
				tx.events = append(tx.events, issueEvent(r, now))
			}
		}
	}
	return nil
}

// exec runs the statement of kind for n rows with args.
func (c *stmtCache) exec(ctx context.Context, tx *txn, kind stmtKind, n int, args []any) error {
	st, err := c.stmt(ctx, tx, kind, n)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(ctx, args...)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return err
}
