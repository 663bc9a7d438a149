package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sallyport/sallyport/audit"
)

var _ Store = (*SQLite)(nil)

// Options configures a SQLite store.
type Options struct {
	// Now is the clock for issue, revocation and audit times; nil means
	// time.Now.
	Now func() time.Time
	// AuditLog, if not nil, receives every committed audit event as a JSON
	// line (see audit.Writer), written after the commit, in commit order.
	// nil means the events are kept in the database only.
	AuditLog io.Writer
}

// SQLite is the Store kept in one SQLite database file, for a single
// Sallyport process (other processes, such as an offline CLI, may share the
// file; they wait for each other's writes).
type SQLite struct {
	db  *sql.DB
	now func() time.Time
	log *audit.Writer // nil: no JSON copy

	// wsem serialises write transactions in this process. SQLite allows
	// one writer at a time; queueing here, rather than on SQLITE_BUSY,
	// keeps many concurrent writers from failing and lets a waiting
	// writer give up when its context ends.
	wsem chan struct{}

	// standing is the read every issuance and every bastion check makes
	// (see Standing), prepared on first use rather than for each call.
	standingMu sync.Mutex
	standing   atomic.Pointer[sql.Stmt]
}

// Open opens the database at path, creating it with mode 0600 if it does not
// exist, and brings its schema up to date. The folder holding path must
// exist. A database written by a newer Sallyport is refused with
// ErrSchemaTooNew.
func Open(ctx context.Context, path string, opts Options) (*SQLite, error) {
	if path == "" {
		return nil, errors.New("store: open: no database path")
	}
	if strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		// The driver would read these as URI syntax, not as part of the name.
		return nil, fmt.Errorf("store: open %s: path must not contain '?' or '#' or start with \"file:\"", path)
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("store: open %s: folder %s does not exist: %w", path, dir, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("store: open %s: %s is not a folder", path, dir)
	}
	// Create the file ourselves so it is private from the start; SQLite
	// gives the -wal and -shm files the database file's permissions.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	fi, err := f.Stat()
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("store: open %s: not a regular file", path)
	}

	// synchronous=FULL: answers (certificates, revocations) depend on
	// committed writes surviving power loss. _txlock=immediate takes the
	// write lock at BEGIN, so a transaction never fails halfway on a lock
	// upgrade and waits (busy_timeout) for another process's writer.
	// A 16 KiB page_size (effective only when the file is created, so it
	// comes before WAL mode) cuts the write calls per issued certificate;
	// a checkpoint every 2000 pages (32 MiB of log) rather than SQLite's
	// 1000 lets a burst of issuance finish before the log is copied back.
	dsn := path + "?_txlock=immediate" +
		"&_pragma=page_size(16384)" +
		"&_pragma=busy_timeout(10000)" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(FULL)" +
		"&_pragma=foreign_keys(ON)" +
		"&_pragma=wal_autocheckpoint(2000)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &SQLite{db: db, now: opts.Now, wsem: make(chan struct{}, 1)}
	if s.now == nil {
		s.now = time.Now
	}
	if opts.AuditLog != nil {
		s.log = audit.NewWriter(opts.AuditLog)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *SQLite) Close() error {
	if st := s.standing.Load(); st != nil {
		st.Close()
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// txn is a write transaction collecting the audit events it commits.
type txn struct {
	*sql.Tx
	ctx    context.Context
	s      *SQLite
	events []audit.Event
}

// audit inserts e, with its time defaulted to the store's clock and made UTC.
func (tx *txn) audit(e audit.Event) error {
	if e.Time.IsZero() {
		e.Time = tx.s.now()
	}
	e.Time = e.Time.UTC()
	if err := e.Validate(); err != nil {
		return err
	}
	fields := []byte("{}")
	if len(e.Fields) > 0 {
		var err error
		if fields, err = json.Marshal(e.Fields); err != nil {
			return fmt.Errorf("audit fields: %w", err)
		}
	}
	if _, err := tx.ExecContext(tx.ctx, `INSERT INTO audit_events (time, type, actor, subject, outcome, reason, fields) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		formatTime(e.Time), e.Type, e.Actor, e.Subject, e.Outcome, e.Reason, string(fields)); err != nil {
		return fmt.Errorf("insert audit event: %w", err)
	}
	tx.events = append(tx.events, e)
	return nil
}

// update runs fn in a write transaction and commits it, then copies the
// transaction's audit events to the audit log. Errors are returned bare for
// the caller to give context, except for ErrAuditLog.
func (s *SQLite) update(ctx context.Context, fn func(tx *txn) error) error {
	select {
	case s.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.wsem }()

	sqltx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	tx := &txn{Tx: sqltx, ctx: ctx, s: s}
	if err := fn(tx); err != nil {
		sqltx.Rollback()
		return err
	}
	if err := sqltx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if s.log == nil {
		return nil
	}
	var errs []error
	for _, e := range tx.events {
		if err := s.log.Write(e); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w after commit: %w", ErrAuditLog, errors.Join(errs...))
	}
	return nil
}

// NextSerial allocates a fresh certificate serial.
func (s *SQLite) NextSerial(ctx context.Context) (uint64, error) {
	var serial int64
	err := s.update(ctx, func(tx *txn) error {
		return tx.QueryRowContext(ctx, `UPDATE serial_counter SET last = last + 1 WHERE id = 1 AND last < ? RETURNING last`, int64(math.MaxInt64)).Scan(&serial)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return 0, errors.New("store: next serial: serials exhausted")
	}
	if err != nil {
		return 0, fmt.Errorf("store: next serial: %w", err)
	}
	return uint64(serial), nil
}

// Audit appends an event.
func (s *SQLite) Audit(ctx context.Context, e audit.Event) error {
	err := s.update(ctx, func(tx *txn) error { return tx.audit(e) })
	if err != nil {
		return fmt.Errorf("store: audit %s by %q: %w", e.Type, e.Actor, err)
	}
	return nil
}

// AuditEvents lists events matching q, newest (last committed) first.
func (s *SQLite) AuditEvents(ctx context.Context, q AuditQuery) ([]audit.Event, error) {
	if q.Limit < 0 {
		return nil, fmt.Errorf("store: audit events: negative limit %d", q.Limit)
	}
	var where []string
	var args []any
	for _, c := range []struct{ col, val string }{{"type", q.Type}, {"actor", q.Actor}, {"subject", q.Subject}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	if !q.Since.IsZero() {
		where = append(where, "time >= ?")
		args = append(args, formatTime(q.Since))
	}
	query := `SELECT time, type, actor, subject, outcome, reason, fields FROM audit_events` + whereClause(where) + ` ORDER BY id DESC`
	if q.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, q.Limit)
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: audit events: %w", err)
	}
	defer rows.Close()
	var events []audit.Event
	for rows.Next() {
		var e audit.Event
		var at, fields string
		if err := rows.Scan(&at, &e.Type, &e.Actor, &e.Subject, &e.Outcome, &e.Reason, &fields); err != nil {
			return nil, fmt.Errorf("store: audit events: %w", err)
		}
		if e.Time, err = parseTime(at); err != nil {
			return nil, fmt.Errorf("store: audit events: %w", err)
		}
		if fields != "{}" {
			if err := json.Unmarshal([]byte(fields), &e.Fields); err != nil {
				return nil, fmt.Errorf("store: audit events: fields: %w", err)
			}
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: audit events: %w", err)
	}
	return events, nil
}

func whereClause(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// timeLayout is RFC 3339 with a fixed nine-digit fraction, so stored UTC
// times sort correctly as strings.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored time %q: %w", s, err)
	}
	return t.UTC(), nil
}

// isConstraint reports whether err is an SQLite constraint violation.
func isConstraint(err error) bool {
	var se *sqlite.Error
	// Extended result codes keep the primary code in the low byte.
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}
