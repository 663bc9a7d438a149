package web

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/store"
)

// suspendedReason is what a suspended identity is told: who suspended it,
// when and why, from the store's *store.SuspendedError in err.
func suspendedReason(err error) string {
	var se *store.SuspendedError
	if errors.As(err, &se) {
		return se.Error()
	}
	return "this identity is suspended; an admin must lift the suspension"
}

// auditUnpinned logs and audits that who's login, pinned to another
// GitHub user, matched no `users:` entry of the policy (reason says so in
// plain words); where is "sign-in" or "issuance". A failure to audit is
// logged: access was only narrowed.
func (s *Server) auditUnpinned(ctx context.Context, who signedIn, login, reason, where string) {
	s.log.Warn("login pinned to another GitHub user", "who", who.actor(), "login", login, "at", where, "reason", reason)
	e := audit.Event{Type: store.AuditTypeLoginPin, Actor: who.actor(), Subject: strings.ToLower(login), Outcome: audit.OutcomeDenied, Reason: reason,
		Fields: map[string]string{"at": where, "github_id": strconv.FormatInt(who.identity.ID, 10)}}
	if err := s.o.Audit.Audit(ctx, e); err != nil {
		s.log.Error("audit login pin", "err", err)
	}
}
