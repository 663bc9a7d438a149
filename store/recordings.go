package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Recording is the index row of one session recording (one session channel
// of the bastion), as kept by package recording.
type Recording struct {
	// ID names the recording and its file.
	ID string
	// SessionID is the bastion's ID of the SSH connection; "" if none.
	SessionID string
	// Identity is who connected, e.g. "github:12345".
	Identity string
	// User is the person's display name, e.g. the GitHub login; may be "".
	User string
	// Login is the principal used on the target.
	Login string
	// Host is the target's policy name.
	Host string
	// Command is the exec command or "subsystem: NAME"; "" for a shell.
	Command string
	// PTY says the channel had a pseudo-terminal. A channel with one, or a
	// shell without one, is recorded in full.
	PTY bool
	// InputRecorded says the input is in the recording, as the policy's
	// record_input decides with or without a pty (for an exec or subsystem
	// channel without a pty, its first 64 KiB).
	InputRecorded bool
	// Path is the file's path relative to the recordings folder, with
	// forward slashes.
	Path string
	// Start is when the recording started; End is when it ended, zero while
	// it runs (or if the bastion stopped before it could finish it).
	Start, End time.Time
	// BytesIn counts user-to-target bytes; BytesOut target-to-user bytes
	// (stdout and stderr).
	BytesIn, BytesOut int64
	// StdoutSHA256 and StdinSHA256 are hex SHA-256 digests of whole
	// streams of an exec or subsystem channel without a pty, the input's
	// only when it is recorded; "" otherwise.
	StdoutSHA256, StdinSHA256 string
	// ExitStatus is the command's exit status; -1 means none.
	ExitStatus int
	// ExitSignal is the signal that ended the command; "" means none.
	ExitSignal string
	// Reason says why the session was ended by the bastion or why its
	// recording failed; "" means a normal end.
	Reason string
	// FileBytes is the size of the finished file.
	FileBytes int64
	// Digest is the hex final chain digest; "" until finished.
	Digest string
	// Signature is the base64 SSH signature of the final digest; "" until
	// finished.
	Signature string
	// SignerFingerprint is ssh.FingerprintSHA256 of the signing key.
	SignerFingerprint string
}

// RecordingFilter selects recordings. Each zero field selects all.
type RecordingFilter struct {
	User      string    // matches Identity or User; "": any
	Host      string    // "": any host
	Login     string    // "": any login
	SessionID string    // "": any session
	Since     time.Time // started at or after; zero: any time
	Limit     int       // at most this many, newest first; 0: no limit
}

// AddRecording inserts the row of a recording that has started. A duplicate
// ID fails.
func (s *SQLite) AddRecording(ctx context.Context, r Recording) error {
	if r.ID == "" || r.Path == "" || r.Start.IsZero() {
		return errors.New("store: add recording: ID, path and start are required")
	}
	err := s.update(ctx, func(tx *txn) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO recordings
	(id, session_id, identity, user_name, login, host, command, pty, input_recorded, path, started_at, exit_status, signer_fingerprint)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.SessionID, r.Identity, r.User, r.Login, r.Host, r.Command, r.PTY, r.InputRecorded, r.Path,
			formatTime(r.Start), r.ExitStatus, r.SignerFingerprint)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: add recording %s: %w", r.ID, err)
	}
	return nil
}

// FinishRecording stores the end of the recording r.ID: end time, counts,
// exit status, reason, file size, digest and signature. It fails with
// ErrNotFound if no such recording was added.
func (s *SQLite) FinishRecording(ctx context.Context, r Recording) error {
	if r.End.IsZero() {
		return fmt.Errorf("store: finish recording %s: no end time", r.ID)
	}
	err := s.update(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, `UPDATE recordings SET
	ended_at = ?, bytes_in = ?, bytes_out = ?, stdout_sha256 = ?, stdin_sha256 = ?, exit_status = ?, exit_signal = ?,
	reason = ?, file_bytes = ?, digest = ?, signature = ?
	WHERE id = ?`,
			formatTime(r.End), r.BytesIn, r.BytesOut, r.StdoutSHA256, r.StdinSHA256, r.ExitStatus, r.ExitSignal,
			r.Reason, r.FileBytes, r.Digest, r.Signature, r.ID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: finish recording %s: %w", r.ID, err)
	}
	return nil
}

// InterruptRecordings closes the rows of recordings that never finished,
// because the bastion writing them stopped mid-session (a crash, a kill),
// with reason and the end endOf gives each. Call it only when no bastion
// is writing to the store: at the start of the one bastion the data
// folder's lock allows. It returns the rows closed.
func (s *SQLite) InterruptRecordings(ctx context.Context, reason string, endOf func(Recording) time.Time) ([]Recording, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+recordingColumns+` FROM recordings WHERE ended_at IS NULL ORDER BY started_at, id`)
	if err != nil {
		return nil, fmt.Errorf("store: interrupt recordings: %w", err)
	}
	recs, err := scanRecordings(rows)
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	for i := range recs {
		recs[i].End, recs[i].Reason = endOf(recs[i]), reason
		if recs[i].End.Before(recs[i].Start) {
			recs[i].End = recs[i].Start
		}
	}
	err = s.update(ctx, func(tx *txn) error {
		for _, r := range recs {
			if _, err := tx.ExecContext(ctx, `UPDATE recordings SET ended_at = ?, reason = ? WHERE id = ? AND ended_at IS NULL`,
				formatTime(r.End), r.Reason, r.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: interrupt recordings: %w", err)
	}
	return recs, nil
}

const recordingColumns = `id, session_id, identity, user_name, login, host, command, pty, input_recorded, path, started_at,
	coalesce(ended_at, ''), bytes_in, bytes_out, stdout_sha256, stdin_sha256, exit_status, exit_signal, reason, file_bytes,
	digest, signature, signer_fingerprint`

// Recording returns the recording with the given ID, or ErrNotFound.
func (s *SQLite) Recording(ctx context.Context, id string) (Recording, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+recordingColumns+` FROM recordings WHERE id = ?`, id)
	if err != nil {
		return Recording{}, fmt.Errorf("store: recording %s: %w", id, err)
	}
	recs, err := scanRecordings(rows)
	if err != nil {
		return Recording{}, fmt.Errorf("store: recording %s: %w", id, err)
	}
	if len(recs) == 0 {
		return Recording{}, fmt.Errorf("store: recording %s: %w", id, ErrNotFound)
	}
	return recs[0], nil
}

// Recordings lists recordings matching f, newest first.
func (s *SQLite) Recordings(ctx context.Context, f RecordingFilter) ([]Recording, error) {
	if f.Limit < 0 {
		return nil, fmt.Errorf("store: recordings: negative limit %d", f.Limit)
	}
	var where []string
	var args []any
	if f.User != "" {
		where = append(where, "(identity = ? OR user_name = ?)")
		args = append(args, f.User, f.User)
	}
	for _, c := range []struct{ col, val string }{{"host", f.Host}, {"login", f.Login}, {"session_id", f.SessionID}} {
		if c.val != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	if !f.Since.IsZero() {
		where = append(where, "started_at >= ?")
		args = append(args, formatTime(f.Since))
	}
	query := `SELECT ` + recordingColumns + ` FROM recordings` + whereClause(where) + ` ORDER BY started_at DESC, id DESC`
	if f.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: recordings: %w", err)
	}
	recs, err := scanRecordings(rows)
	if err != nil {
		return nil, fmt.Errorf("store: recordings: %w", err)
	}
	return recs, nil
}

func scanRecordings(rows *sql.Rows) ([]Recording, error) {
	defer rows.Close()
	var recs []Recording
	for rows.Next() {
		var r Recording
		var started, ended string
		if err := rows.Scan(&r.ID, &r.SessionID, &r.Identity, &r.User, &r.Login, &r.Host, &r.Command, &r.PTY, &r.InputRecorded,
			&r.Path, &started, &ended, &r.BytesIn, &r.BytesOut, &r.StdoutSHA256, &r.StdinSHA256, &r.ExitStatus, &r.ExitSignal,
			&r.Reason, &r.FileBytes, &r.Digest, &r.Signature, &r.SignerFingerprint); err != nil {
			return nil, err
		}
		var err error
		if r.Start, err = parseTime(started); err != nil {
			return nil, err
		}
		if ended != "" {
			if r.End, err = parseTime(ended); err != nil {
				return nil, err
			}
		}
		recs = append(recs, r)
	}
	return recs, rows.Err()
}
