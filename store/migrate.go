package store

import (
	"context"
	"fmt"
)

// migrations are applied in order, each in its own transaction; migration i
// brings the schema to version i+1. Never edit or reorder a released entry:
// append a new one.
//
// Times are TEXT in fixed-width RFC 3339 UTC (see formatTime) so they sort
// as strings and read well in the sqlite3 shell.
var migrations = []string{
	// 1: serial counter, certificates, revocations, audit events.
	`
CREATE TABLE serial_counter (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	last INTEGER NOT NULL CHECK (last >= 0)
);
INSERT INTO serial_counter (id, last) VALUES (1, 0);

CREATE TABLE certificates (
	serial          INTEGER PRIMARY KEY CHECK (serial > 0),
	key_id          TEXT NOT NULL,
	cert_type       TEXT NOT NULL CHECK (cert_type IN ('user', 'host')),
	identity        TEXT NOT NULL,
	principals      TEXT NOT NULL, -- JSON array of strings
	valid_after     INTEGER NOT NULL,
	valid_before    INTEGER NOT NULL,
	key_fingerprint TEXT NOT NULL,
	ca_fingerprint  TEXT NOT NULL,
	certificate     TEXT NOT NULL, -- authorized_keys format
	issued_at       TEXT NOT NULL
);
CREATE INDEX certificates_key_fingerprint ON certificates (key_fingerprint);
CREATE INDEX certificates_identity ON certificates (identity);

CREATE TABLE revoked_serials (
	serial     INTEGER PRIMARY KEY CHECK (serial > 0),
	reason     TEXT NOT NULL,
	actor      TEXT NOT NULL,
	revoked_at TEXT NOT NULL
);

CREATE TABLE revoked_keys (
	key_fingerprint TEXT PRIMARY KEY,
	key_blob        BLOB NOT NULL, -- SSH wire format
	reason          TEXT NOT NULL,
	actor           TEXT NOT NULL,
	revoked_at      TEXT NOT NULL
);

CREATE TABLE audit_events (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	time    TEXT NOT NULL,
	type    TEXT NOT NULL,
	actor   TEXT NOT NULL,
	subject TEXT NOT NULL,
	outcome TEXT NOT NULL,
	reason  TEXT NOT NULL,
	fields  TEXT NOT NULL -- JSON object of strings
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_type ON audit_events (type, id);
CREATE INDEX audit_events_actor ON audit_events (actor, id);
CREATE INDEX audit_events_subject ON audit_events (subject, id);
`,
	// 2: the session recording index (package recording).
	`
CREATE TABLE recordings (
	id                 TEXT PRIMARY KEY,
	session_id         TEXT NOT NULL,
	identity           TEXT NOT NULL,
	user_name          TEXT NOT NULL,
	login              TEXT NOT NULL,
	host               TEXT NOT NULL,
	command            TEXT NOT NULL,
	pty                INTEGER NOT NULL CHECK (pty IN (0, 1)),
	input_recorded     INTEGER NOT NULL CHECK (input_recorded IN (0, 1)),
	path               TEXT NOT NULL, -- relative to the recordings folder
	started_at         TEXT NOT NULL,
	ended_at           TEXT,          -- NULL while running or if never finished
	bytes_in           INTEGER NOT NULL DEFAULT 0,
	bytes_out          INTEGER NOT NULL DEFAULT 0,
	stdout_sha256      TEXT NOT NULL DEFAULT '',
	stdin_sha256       TEXT NOT NULL DEFAULT '',
	exit_status        INTEGER NOT NULL DEFAULT -1,
	exit_signal        TEXT NOT NULL DEFAULT '',
	reason             TEXT NOT NULL DEFAULT '',
	file_bytes         INTEGER NOT NULL DEFAULT 0,
	digest             TEXT NOT NULL DEFAULT '', -- hex final chain digest
	signature          TEXT NOT NULL DEFAULT '', -- base64 SSH signature of it
	signer_fingerprint TEXT NOT NULL
);
CREATE INDEX recordings_started ON recordings (started_at);
CREATE INDEX recordings_identity ON recordings (identity, started_at);
CREATE INDEX recordings_user ON recordings (user_name, started_at);
CREATE INDEX recordings_host ON recordings (host, started_at);
CREATE INDEX recordings_session ON recordings (session_id);
`,
	// 3: signed requests already used (break-glass replay refusal).
	`
CREATE TABLE used_requests (
	id      TEXT PRIMARY KEY,
	used_at TEXT NOT NULL,
	actor   TEXT NOT NULL
);
`,
	// 4: GitHub logins pinned to the numeric user ID they were first seen
	// with, and suspended identities (see standing.go).
	`
CREATE TABLE login_pins (
	login     TEXT PRIMARY KEY,        -- lower case: GitHub logins ignore case
	github_id INTEGER NOT NULL CHECK (github_id > 0),
	seen_as   TEXT NOT NULL,           -- the login as GitHub spelled it
	source    TEXT NOT NULL,           -- where it was first seen, or "admin"
	pinned_at TEXT NOT NULL,
	actor     TEXT NOT NULL DEFAULT '', -- the admin who re-pinned it; '' when first seen
	reason    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX login_pins_github_id ON login_pins (github_id);

CREATE TABLE suspensions (
	subject      TEXT PRIMARY KEY, -- "github:ID", "ci:OWNER/NAME" or another identity
	reason       TEXT NOT NULL,
	actor        TEXT NOT NULL,
	suspended_at TEXT NOT NULL
);
`,
}

// schemaVersion is the database schema version this binary writes.
var schemaVersion = len(migrations)

// migrate brings the database to schemaVersion, refusing one that is newer.
// Each step re-reads the version inside its write transaction, so two
// processes opening the same new database do not apply a step twice.
func (s *SQLite) migrate(ctx context.Context) error {
	for {
		done := false
		err := s.update(ctx, func(tx *txn) error {
			if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	applied_at TEXT NOT NULL
)`); err != nil {
				return err
			}
			var v int
			if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
				return err
			}
			switch {
			case v > schemaVersion:
				return fmt.Errorf("%w: database is at version %d, this binary knows up to %d; upgrade Sallyport", ErrSchemaTooNew, v, schemaVersion)
			case v == schemaVersion:
				done = true
				return nil
			}
			if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
				return fmt.Errorf("apply migration %d: %w", v+1, err)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, v+1, formatTime(s.now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if done {
			return nil
		}
	}
}
