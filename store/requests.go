package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/sallyport/sallyport/audit"
)

// ErrRequestUsed means a signed request (such as a break-glass request)
// was used before; each is accepted once.
var ErrRequestUsed = errors.New("request was already used")

// UseRequest durably records the first use of the signed request id
// together with the audit event e, in one transaction. If id was recorded
// before, nothing is written and the error wraps ErrRequestUsed.
func (s *SQLite) UseRequest(ctx context.Context, id string, e audit.Event) error {
	if id == "" {
		return errors.New("store: use request: empty id")
	}
	err := s.update(ctx, func(tx *txn) error {
		var usedAt string
		err := tx.QueryRowContext(ctx, `SELECT used_at FROM used_requests WHERE id = ?`, id).Scan(&usedAt)
		if err == nil {
			return fmt.Errorf("%w at %s", ErrRequestUsed, usedAt)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		now := s.now()
		if _, err := tx.ExecContext(ctx, `INSERT INTO used_requests (id, used_at, actor) VALUES (?, ?, ?)`, id, formatTime(now), e.Actor); err != nil {
			if isConstraint(err) {
				return fmt.Errorf("%w: %w", ErrRequestUsed, err)
			}
			return err
		}
		return tx.audit(e)
	})
	if err != nil {
		return fmt.Errorf("store: use request %s: %w", id, err)
	}
	return nil
}
