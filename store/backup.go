package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"

	"github.com/sallyport/sallyport/audit"
)

// Summary counts what a database holds, for backup manifests and for
// checking that a restored database is the one that was backed up.
type Summary struct {
	SchemaVersion int `json:"schema_version"`
	// LastSerial is the serial counter: the last serial handed out.
	LastSerial   uint64 `json:"last_serial"`
	Certificates int64  `json:"certificates"`
	Revocations  int64  `json:"revocations"`
	AuditEvents  int64  `json:"audit_events"`
}

// Summary counts the database's contents in one read transaction.
func (s *SQLite) Summary(ctx context.Context) (Summary, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Summary{}, fmt.Errorf("store: summary: %w", err)
	}
	defer tx.Rollback()
	var sum Summary
	var last int64
	err = tx.QueryRowContext(ctx, `SELECT
	(SELECT coalesce(max(version), 0) FROM schema_migrations),
	(SELECT last FROM serial_counter WHERE id = 1),
	(SELECT count(*) FROM certificates),
	(SELECT count(*) FROM revoked_serials) + (SELECT count(*) FROM revoked_keys),
	(SELECT count(*) FROM audit_events)`).Scan(&sum.SchemaVersion, &last, &sum.Certificates, &sum.Revocations, &sum.AuditEvents)
	if err != nil {
		return Summary{}, fmt.Errorf("store: summary: %w", err)
	}
	sum.LastSerial = uint64(last)
	return sum, nil
}

// Snapshot writes a consistent copy of the database to path with VACUUM
// INTO, while the store stays in use. path must not exist; the copy is
// made readable by its owner only.
func (s *SQLite) Snapshot(ctx context.Context, path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("store: snapshot: %s: %w", path, fs.ErrExist)
	}
	// Create the file empty and private first: VACUUM INTO accepts an
	// empty file and keeps its permissions.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("store: snapshot: %w", err)
	}
	f.Close()
	if _, err := s.db.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		os.Remove(path)
		return fmt.Errorf("store: snapshot: %w", err)
	}
	return nil
}

// CheckIntegrity runs SQLite's integrity check.
func (s *SQLite) CheckIntegrity(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return fmt.Errorf("store: integrity check: %w", err)
	}
	defer rows.Close()
	var problems []error
	for rows.Next() {
		var msg string
		if err := rows.Scan(&msg); err != nil {
			return fmt.Errorf("store: integrity check: %w", err)
		}
		if msg != "ok" {
			problems = append(problems, errors.New(msg))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: integrity check: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("store: integrity check: %w", errors.Join(problems...))
	}
	return nil
}

// AdvanceSerials moves the serial counter forward by gap and audits it as
// a "restore" event by actor. After a restore, serials issued between the
// backup and the loss of the original are unknown; skipping a gap keeps
// them from being issued twice. It returns the new counter.
func (s *SQLite) AdvanceSerials(ctx context.Context, gap uint64, actor string) (uint64, error) {
	if gap > math.MaxInt64/2 {
		return 0, fmt.Errorf("store: advance serials: gap %d too large", gap)
	}
	var last int64
	err := s.update(ctx, func(tx *txn) error {
		var before int64
		if err := tx.QueryRowContext(ctx, `SELECT last FROM serial_counter WHERE id = 1`).Scan(&before); err != nil {
			return err
		}
		if before > math.MaxInt64-int64(gap) {
			return errors.New("serials exhausted")
		}
		if err := tx.QueryRowContext(ctx, `UPDATE serial_counter SET last = last + ? WHERE id = 1 RETURNING last`, int64(gap)).Scan(&last); err != nil {
			return err
		}
		return tx.audit(audit.Event{
			Type: "restore", Actor: actor, Subject: "serial_counter", Outcome: audit.OutcomeOK,
			Reason: "restored from a backup; serials issued after the backup are skipped",
			Fields: map[string]string{"serial_before": strconv.FormatInt(before, 10), "serial_after": strconv.FormatInt(last, 10)},
		})
	})
	if err != nil {
		return 0, fmt.Errorf("store: advance serials: %w", err)
	}
	return uint64(last), nil
}
