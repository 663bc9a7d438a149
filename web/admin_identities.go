package web

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sallyport/sallyport/store"
)

// identitiesData is the identities page: the suspensions in force and the
// GitHub logins pinned to numeric user IDs.
type identitiesData struct {
	Suspensions []suspensionRow
	Login       string // the pins shown are of this login; "" for all
	GitHubID    string // or of this GitHub user
	Pins        []pinRow
	Limit       int
}

type suspensionRow struct {
	store.Suspension
	What string
	At   string
}

type pinRow struct {
	store.LoginPin
	At string
}

const maxPinRows = 500

func (s *Server) adminIdentities(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := s.requireAdmin(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	s.renderIdentities(w, r, sess, http.StatusOK, q.Get("login"), q.Get("github_id"), "", "")
}

// renderIdentities shows the identities page, its pins filtered by login
// or GitHub user ID ("" for any), with a message or error about what was
// just done.
func (s *Server) renderIdentities(w http.ResponseWriter, r *http.Request, sess *session, status int, login, githubID, msg, errMsg string) {
	d := identitiesData{Login: strings.TrimSpace(login), GitHubID: strings.TrimSpace(githubID), Limit: maxPinRows}
	ctx := r.Context()
	sps, err := s.o.Admin.Store.Suspensions(ctx)
	if err != nil {
		s.log.Error("admin: list suspensions", "err", err)
		errMsg = joinMessages(errMsg, "The suspensions could not be read.")
	}
	for _, sp := range sps {
		d.Suspensions = append(d.Suspensions, suspensionRow{Suspension: sp, What: sp.Describe(), At: sp.Time.UTC().Format(time.RFC3339)})
	}
	f := store.LoginPinFilter{Login: d.Login, Limit: maxPinRows}
	if d.GitHubID != "" {
		n, err := strconv.ParseInt(d.GitHubID, 10, 64)
		if err != nil || n <= 0 {
			errMsg, status = joinMessages(errMsg, "A GitHub user ID is a positive whole number."), http.StatusBadRequest
		}
		f.GitHubID = n
	}
	pins, err := s.o.Admin.Store.LoginPins(ctx, f)
	if err != nil {
		s.log.Error("admin: list login pins", "err", err)
		errMsg = joinMessages(errMsg, "The login pins could not be read.")
	}
	for _, p := range pins {
		d.Pins = append(d.Pins, pinRow{LoginPin: p, At: p.Time.UTC().Format(time.RFC3339)})
	}
	s.renderAdmin(w, status, "admin_identities", sess, true, "Identities", msg, errMsg, d)
}

func joinMessages(a, b string) string {
	if a == "" {
		return b
	}
	return a + " " + b
}

// adminLift lifts the suspension of an identity.
func (s *Server) adminLift(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := s.requireAdmin(w, r)
	if !ok {
		return
	}
	reason, err := revokeReason(r)
	if err != nil {
		s.renderIdentities(w, r, sess, http.StatusBadRequest, "", "", "", "Not lifted: "+err.Error())
		return
	}
	subject, err := store.ParseSuspensionSubject(r.PostFormValue("identity"))
	if err != nil {
		s.renderIdentities(w, r, sess, http.StatusBadRequest, "", "", "", "Not lifted: "+err.Error())
		return
	}
	sp, err := s.o.Admin.Store.Lift(r.Context(), subject, sess.user.actor(), reason)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.renderIdentities(w, r, sess, http.StatusNotFound, "", "", "", fmt.Sprintf("Not lifted: %s is not suspended.", store.DescribeSubject(subject)))
		return
	case err != nil && !errors.Is(err, store.ErrAuditLog):
		s.log.Error("admin: lift suspension", "identity", subject, "err", err)
		s.renderIdentities(w, r, sess, http.StatusInternalServerError, "", "", "", "Not lifted: the change could not be recorded. Try again.")
		return
	}
	s.log.Warn("suspension lifted", "identity", subject, "by", sess.user.actor(), "reason", reason)
	s.renderIdentities(w, r, sess, http.StatusOK, "", "", fmt.Sprintf("Lifted the suspension of %s (suspended since %s by %s: %q). Keys revoked with it stay revoked.",
		sp.Describe(), sp.Time.UTC().Format(time.RFC3339), sp.Actor, sp.Reason), "")
}

// pinForm reads the admin, login and reason of a re-pin or release form,
// answering a request that lacks them itself; refused begins that answer
// ("Not re-pinned").
func (s *Server) pinForm(w http.ResponseWriter, r *http.Request, refused string) (sess *session, login, reason string, ok bool) {
	sess, _, ok = s.requireAdmin(w, r)
	if !ok {
		return nil, "", "", false
	}
	login = strings.TrimSpace(r.PostFormValue("login"))
	reason, err := revokeReason(r)
	if err != nil {
		s.renderIdentities(w, r, sess, http.StatusBadRequest, login, "", "", refused+": "+err.Error())
		return nil, "", "", false
	}
	if _, err := store.NormalizeLogin(login); err != nil {
		s.renderIdentities(w, r, sess, http.StatusBadRequest, "", "", "", refused+": "+err.Error()+".")
		return nil, "", "", false
	}
	return sess, login, reason, true
}

// adminRepin pins a GitHub login to a numeric user ID: for a login that
// legitimately changed hands (its first account was deleted or renamed,
// and the policy's `users:` entry means the new holder).
func (s *Server) adminRepin(w http.ResponseWriter, r *http.Request) {
	sess, login, reason, ok := s.pinForm(w, r, "Not re-pinned")
	if !ok {
		return
	}
	id, err := strconv.ParseInt(strings.TrimSpace(r.PostFormValue("github_id")), 10, 64)
	if err != nil || id <= 0 {
		s.renderIdentities(w, r, sess, http.StatusBadRequest, login, "", "", "Not re-pinned: give the numeric GitHub user ID (https://api.github.com/users/LOGIN shows it).")
		return
	}
	old, err := s.o.Admin.Store.Repin(r.Context(), login, id, sess.user.actor(), reason)
	if err != nil && !errors.Is(err, store.ErrAuditLog) {
		s.log.Error("admin: re-pin login", "login", login, "err", err)
		s.renderIdentities(w, r, sess, http.StatusInternalServerError, login, "", "", "Not re-pinned: the change could not be recorded. Try again.")
		return
	}
	was := "was not pinned"
	if old != nil {
		was = fmt.Sprintf("was %d", old.GitHubID)
	}
	s.log.Warn("login re-pinned", "login", login, "github_id", id, "previous", was, "by", sess.user.actor(), "reason", reason)
	s.renderIdentities(w, r, sess, http.StatusOK, login, "", fmt.Sprintf("Login %s is now pinned to GitHub user %d (%s): policy entries naming it apply to that account only.",
		strings.ToLower(login), id, was), "")
}

// adminRelease removes the pin of a login; it is pinned again to whichever
// account is seen with it next.
func (s *Server) adminRelease(w http.ResponseWriter, r *http.Request) {
	sess, login, reason, ok := s.pinForm(w, r, "Not released")
	if !ok {
		return
	}
	old, err := s.o.Admin.Store.Unpin(r.Context(), login, sess.user.actor(), reason)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.renderIdentities(w, r, sess, http.StatusNotFound, login, "", "", fmt.Sprintf("Not released: login %s is not pinned.", strings.ToLower(login)))
		return
	case err != nil && !errors.Is(err, store.ErrAuditLog):
		s.log.Error("admin: release login", "login", login, "err", err)
		s.renderIdentities(w, r, sess, http.StatusInternalServerError, login, "", "", "Not released: the change could not be recorded. Try again.")
		return
	}
	s.log.Warn("login released", "login", login, "previous", old.GitHubID, "by", sess.user.actor(), "reason", reason)
	s.renderIdentities(w, r, sess, http.StatusOK, login, "", fmt.Sprintf("Login %s is released (it was pinned to GitHub user %d); it will be pinned to the next account Sallyport sees with it.",
		old.Login, old.GitHubID), "")
}
