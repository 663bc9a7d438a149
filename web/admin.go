package web

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/ca"
	"github.com/sallyport/sallyport/standing"
	"github.com/sallyport/sallyport/store"
	"github.com/sallyport/sallyport/trust"
)

// AdminOptions turn on the admin role and what hangs on it: the admin
// pages (revocation, the audit log, every recording), everyone's own
// recordings page, and the break-glass endpoint.
//
// Who is an admin is decided by the trust folder only (AdminSet): a person
// signed in with GitHub is an admin while an admitted admin key names
// their numeric GitHub ID. Team membership, the policy and OIDC sign-ins
// never make an admin. Every admin decision is logged and audited with
// its reason.
type AdminOptions struct {
	// Admins is the admin set. Required.
	Admins *AdminSet
	// Store is the state the admin pages read and revoke in. Required.
	Store AdminStore
	// RecordingsDir is the folder recordings are kept under (DATA/
	// recordings); empty means recordings cannot be shown.
	RecordingsDir string
	// SessionCA is the public key recordings are signed with, and which
	// signs the bastion's session certificates (recorded under the
	// identity of whoever connected), whose one-minute keys "revoke
	// everything of a user" leaves alone. nil means only the digest chains
	// of recordings are checked, which proves nothing against someone able
	// to rewrite a whole file, and that "revoke everything" also revokes
	// the keys of session certificates.
	SessionCA ssh.PublicKey
	// BreakGlass, if set, turns on POST BreakGlassPath.
	BreakGlass *BreakGlassOptions
}

// BreakGlassOptions configure POST BreakGlassPath, which turns a
// break-glass request clear-signed by admins into a certificate of at most
// an hour without asking GitHub anything.
type BreakGlassOptions struct {
	// Authority issues the certificate with the user CA. Required.
	Authority *ca.Authority
	// Ledger refuses a request used before. Required.
	Ledger trust.RequestLedger
	// Signers is how many distinct admins must have signed; zero means 1.
	Signers int
	// PerMinute limits requests per client address; zero means 5.
	PerMinute int
}

// AdminStore is the part of the store the admin pages use; *store.SQLite
// implements it.
type AdminStore interface {
	Revoke(ctx context.Context, r store.Revocation) error
	RevokeIdentity(ctx context.Context, identity, sessionCA, reason, actor string) (store.IdentityRevocation, error)
	Revocations(ctx context.Context) ([]store.Revocation, error)
	Certificates(ctx context.Context, f store.CertificateFilter) ([]store.Certificate, error)
	AuditEvents(ctx context.Context, q store.AuditQuery) ([]audit.Event, error)
	Recordings(ctx context.Context, f store.RecordingFilter) ([]store.Recording, error)
	Recording(ctx context.Context, id string) (store.Recording, error)
	Suspend(ctx context.Context, sp store.Suspension) (store.Suspension, bool, error)
	Lift(ctx context.Context, subject, actor, reason string) (store.Suspension, error)
	Suspensions(ctx context.Context) ([]store.Suspension, error)
	LoginPins(ctx context.Context, f store.LoginPinFilter) ([]store.LoginPin, error)
	Repin(ctx context.Context, login string, githubID int64, actor, reason string) (*store.LoginPin, error)
	Unpin(ctx context.Context, login, actor, reason string) (store.LoginPin, error)
}

// AuditTypeAdmin is the audit event type of every admin decision: a
// signed-in person asking for an admin page or action, allowed or denied,
// with the reason.
const AuditTypeAdmin = "admin"

func (s *Server) initAdmin() error {
	a := s.o.Admin
	if a == nil {
		return nil
	}
	s.pages.records = true
	if a.Admins == nil || a.Store == nil {
		return errors.New("admin options need an admin set and a store")
	}
	if bg := a.BreakGlass; bg != nil {
		if bg.Authority == nil || bg.Ledger == nil {
			return errors.New("break-glass needs an authority and a ledger")
		}
		if bg.Signers <= 0 {
			bg.Signers = 1
		}
		if bg.PerMinute <= 0 {
			bg.PerMinute = 5
		}
		s.breakGlassRL = newLimiter(bg.PerMinute, s.now)
	}
	return nil
}

func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin", s.adminHome)
	mux.HandleFunc("GET /admin/certificates", s.adminCertificates)
	mux.HandleFunc("POST /admin/revoke", s.adminRevoke)
	mux.HandleFunc("POST /admin/revoke-user", s.adminRevokeUser)
	mux.HandleFunc("GET /admin/identities", s.adminIdentities)
	mux.HandleFunc("POST /admin/lift", s.adminLift)
	mux.HandleFunc("POST /admin/repin", s.adminRepin)
	mux.HandleFunc("POST /admin/release", s.adminRelease)
	mux.HandleFunc("GET /admin/audit", s.adminAudit)
	mux.HandleFunc("GET /recordings", s.recordingsPage)
	mux.HandleFunc("GET /recordings/{id}", s.recordingPage)
	mux.HandleFunc("GET /recordings/{id}/cast", s.recordingCast)
	mux.HandleFunc("POST "+BreakGlassPath, s.breakGlass)
}

// adminPage is what the admin and recordings templates see.
type adminPage struct {
	Title   string
	Session *sessionView
	Error   string
	Message string
	D       any
}

func (s *Server) renderAdmin(w http.ResponseWriter, status int, name string, sess *session, admin bool, title, msg, errMsg string, d any) {
	u := sess.user
	sv := &sessionView{Login: u.display(), ID: u.identity.ID, Provider: u.provider, Teams: u.identity.Teams,
		CSRF: sess.csrf, Expires: sess.expires.UTC().Format(time.RFC1123), Admin: admin, Records: s.o.Admin != nil}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	s.pages.t[name].ExecuteTemplate(w, name+".html", adminPage{Title: title, Session: sv, Error: errMsg, Message: msg, D: d}) //nolint:errcheck // the client went away
}

// isAdminNow tells, from the admin set last computed, whether to show a
// signed-in person the admin link. It decides nothing.
func (s *Server) isAdminNow(sess *session) bool {
	if s.o.Admin == nil || sess == nil {
		return false
	}
	admins, err := s.o.Admin.Admins.Current()
	ok, _ := adminDecision(admins, err, sess.user.provider, sess.user.identity.ID)
	return ok
}

// signedInFor returns the browser session of a page that needs one; if
// there is none it sends the browser to sign in and returns false. A POST
// must carry the session's CSRF token.
func (s *Server) signedInFor(w http.ResponseWriter, r *http.Request) (*session, bool) {
	if s.o.Admin == nil {
		s.pages.error(w, http.StatusNotFound, "Not available", "Admin pages and recordings are not configured on this server.")
		return nil, false
	}
	sess, _, ok := s.browserSession(r)
	if !ok {
		if r.Method == http.MethodGet {
			http.Redirect(w, r, "/login?"+url.Values{"return_to": {r.URL.RequestURI()}}.Encode(), http.StatusSeeOther)
		} else {
			s.pages.error(w, http.StatusUnauthorized, "Sign in first", "Your session ended. Sign in again and repeat the action.")
		}
		return nil, false
	}
	if r.Method == http.MethodPost && !constantEqual(r.PostFormValue("csrf"), sess.csrf) {
		s.pages.error(w, http.StatusForbidden, "Refused", "The form was not sent from this site's page. Reload the page and try again.")
		return nil, false
	}
	// A session made before its owner was suspended (by another server
	// or `sallyport ca revoke --identity`) opens no admin page and no
	// recording.
	_, err := standing.Check(r.Context(), s.o.Standing, sess.user.actor(), sess.user.identity, standing.SourceSignIn)
	switch {
	case errors.Is(err, store.ErrSuspended):
		s.log.Warn("suspended identity refused a page", "who", sess.user.actor(), "page", r.URL.Path)
		s.pages.error(w, http.StatusForbidden, "Suspended", "Your access is suspended: "+suspendedReason(err)+".")
		return nil, false
	case err != nil:
		s.log.Error("page: standing", "who", sess.user.actor(), "err", err)
		s.pages.error(w, http.StatusServiceUnavailable, "Not available now", "Sallyport could not check your account. Try again in a minute.")
		return nil, false
	}
	return sess, true
}

// decideAdmin decides whether sess is an admin now, recomputing the admin
// set from the trust folder, and logs and audits the decision. what names
// the page or action asked for.
func (s *Server) decideAdmin(ctx context.Context, sess *session, what string) (*trust.Admins, bool, string) {
	admins, err := s.o.Admin.Admins.Refresh("admin request")
	ok, reason := adminDecision(admins, err, sess.user.provider, sess.user.identity.ID)
	outcome := audit.OutcomeOK
	if !ok {
		outcome = audit.OutcomeDenied
		s.log.Warn("admin access denied", "who", sess.user.actor(), "login", sess.user.display(), "what", what, "reason", reason)
	} else {
		s.log.Info("admin access", "who", sess.user.actor(), "login", sess.user.display(), "what", what, "reason", reason)
	}
	e := audit.Event{Type: AuditTypeAdmin, Actor: sess.user.actor(), Subject: what, Outcome: outcome, Reason: truncate(reason, 1000),
		Fields: map[string]string{"login": sess.user.display(), "provider": sess.user.provider}}
	if aerr := s.o.Audit.Audit(ctx, e); aerr != nil {
		s.log.Error("audit admin decision", "err", aerr)
		if ok {
			// Admin actions are answered only once their decision is on record.
			return admins, false, "the decision could not be recorded in the audit log; try again"
		}
	}
	return admins, ok, reason
}

// requireAdmin is signedInFor followed by decideAdmin; a refusal is
// answered with 403 and the reason.
func (s *Server) requireAdmin(w http.ResponseWriter, r *http.Request) (*session, *trust.Admins, bool) {
	sess, ok := s.signedInFor(w, r)
	if !ok {
		return nil, nil, false
	}
	admins, ok, reason := s.decideAdmin(r.Context(), sess, r.Method+" "+r.URL.Path)
	if !ok {
		s.renderAdmin(w, http.StatusForbidden, "error", sess, false, "Admins only", "", "This page is for Sallyport admins only: "+reason+".", nil)
		return nil, nil, false
	}
	return sess, admins, true
}

// adminHomeData is the admin overview.
type adminHomeData struct {
	Admins    []trust.Admin
	Rejected  []trust.Rejected
	Threshold int
	TrustDir  string
	Computed  string

	PolicyFile     string
	PolicyLoadedAt string
	Required       int
	Signatures     string
	Refusal        *PolicyRefusal
	BreakGlass     bool
	BreakGlassPath string
	BaseURL        string
}

func (s *Server) adminHome(w http.ResponseWriter, r *http.Request) {
	sess, admins, ok := s.requireAdmin(w, r)
	if !ok {
		return
	}
	d := adminHomeData{Admins: admins.List(), Rejected: admins.Rejected(), Threshold: admins.Threshold(),
		TrustDir: s.o.Admin.Admins.Dir(), Computed: admins.Now().UTC().Format(time.RFC3339),
		BreakGlass: s.o.Admin.BreakGlass != nil, BreakGlassPath: BreakGlassPath, BaseURL: s.base.String()}
	if pf, ok := s.o.Policy.(*PolicyFile); ok {
		d.PolicyFile = pf.Path()
		d.PolicyLoadedAt = pf.LoadedAt().UTC().Format(time.RFC3339)
		d.Required = pf.RequiredSignatures()
		d.Signatures = sigSummary(pf.Signatures())
		d.Refusal = pf.Refusal()
	}
	s.renderAdmin(w, http.StatusOK, "admin", sess, true, "Admin", "", "", d)
}

// certRow is one certificate on the certificates page.
type certRow struct {
	store.Certificate
	Revoked     bool
	ValidBefore string
	Expired     bool
}

type certsData struct {
	Identity string
	Serial   string
	Certs    []certRow
	Limit    int
}

const maxCertRows = 500

func (s *Server) adminCertificates(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := s.requireAdmin(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	s.renderCertificates(w, r, sess, http.StatusOK, q.Get("identity"), q.Get("serial"), "", "")
}

// renderCertificates shows the certificates page filtered by identity and
// serial ("" for any), with a message or error about what was just done.
func (s *Server) renderCertificates(w http.ResponseWriter, r *http.Request, sess *session, status int, identity, serial, msg, errMsg string) {
	d := certsData{Identity: strings.TrimSpace(identity), Serial: strings.TrimSpace(serial), Limit: maxCertRows}
	f := store.CertificateFilter{Limit: maxCertRows}
	var bad string
	if d.Identity != "" {
		id, err := parseIdentity(d.Identity)
		if err != nil {
			bad = err.Error()
		}
		f.Identity, d.Identity = id, id
	}
	if d.Serial != "" {
		n, err := strconv.ParseUint(d.Serial, 10, 64)
		if err != nil || n == 0 {
			bad = "A serial is a positive whole number."
		}
		f.Serial = n
	}
	if bad != "" {
		if errMsg == "" {
			errMsg, status = bad, http.StatusBadRequest
		}
	} else {
		certs, err := s.o.Admin.Store.Certificates(r.Context(), f)
		if err != nil {
			s.log.Error("admin: list certificates", "err", err)
			errMsg = "The certificates could not be read."
		}
		revoked, err := s.revokedSet(r.Context())
		if err != nil {
			s.log.Error("admin: list revocations", "err", err)
			errMsg = "The revocations could not be read."
		}
		now := s.now()
		for _, c := range certs {
			row := certRow{Certificate: c, Revoked: revoked.serials[c.Serial] || revoked.keys[c.KeyFingerprint]}
			if c.ValidBefore == ssh.CertTimeInfinity {
				row.ValidBefore = "forever"
			} else {
				vb := time.Unix(int64(c.ValidBefore), 0)
				row.ValidBefore = vb.UTC().Format(time.RFC3339)
				row.Expired = !now.Before(vb)
			}
			d.Certs = append(d.Certs, row)
		}
	}
	s.renderAdmin(w, status, "admin_certs", sess, true, "Certificates", msg, errMsg, d)
}

type revokedSet struct {
	serials map[uint64]bool
	keys    map[string]bool // ssh.FingerprintSHA256
}

func (s *Server) revokedSet(ctx context.Context) (revokedSet, error) {
	rs := revokedSet{serials: map[uint64]bool{}, keys: map[string]bool{}}
	revs, err := s.o.Admin.Store.Revocations(ctx)
	for _, r := range revs {
		if r.Serial != 0 {
			rs.serials[r.Serial] = true
		}
		if r.Key != nil {
			rs.keys[ssh.FingerprintSHA256(r.Key)] = true
		}
	}
	return rs, err
}

// identityRE matches a recorded identity: a lower-case scheme such as
// "github", "github-actions", "breakglass" or "oidc", then printable
// ASCII, at most maxIdentityLen bytes in all: long enough for a CI
// identity's ref and workflow (policy.CIClaims.IdentityString).
var identityRE = regexp.MustCompile(`^[a-z][a-z-]*:[!-~]+$`)

const maxIdentityLen = 8 << 10

// parseIdentity reads the identity certificates are recorded for:
// "github:ID", a bare numeric GitHub ID, or another recorded identity such
// as "github-actions:...", "oidc:ISSUER#SUBJECT" or "breakglass:ID"; or a
// suspension subject, "ci:OWNER/NAME".
func parseIdentity(s string) (string, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
		return "github:" + strconv.FormatInt(n, 10), nil
	}
	if len(s) > maxIdentityLen || !identityRE.MatchString(s) {
		return "", fmt.Errorf("%q is not an identity: give a numeric GitHub ID or github:ID (never a login, which can be renamed)", truncate(s, 80))
	}
	return s, nil
}

// revokeReason reads the reason of a revocation form.
func revokeReason(r *http.Request) (string, error) {
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		return "", errors.New("say why, in a few words: the reason is kept with the revocation")
	}
	if len(reason) > 500 {
		return "", errors.New("the reason is longer than 500 characters")
	}
	return reason, nil
}

func (s *Server) adminRevoke(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := s.requireAdmin(w, r)
	if !ok {
		return
	}
	reason, err := revokeReason(r)
	if err != nil {
		s.renderCertificates(w, r, sess, http.StatusBadRequest, "", "", "", "Not revoked: "+err.Error())
		return
	}
	serial, err := strconv.ParseUint(strings.TrimSpace(r.PostFormValue("serial")), 10, 64)
	if err != nil || serial == 0 {
		s.renderCertificates(w, r, sess, http.StatusBadRequest, "", "", "", "Not revoked: a serial is a positive whole number.")
		return
	}
	err = s.o.Admin.Store.Revoke(r.Context(), store.Revocation{Serial: serial, Reason: reason, Actor: sess.user.actor()})
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.renderCertificates(w, r, sess, http.StatusNotFound, "", "", "", fmt.Sprintf("Not revoked: no certificate with serial %d was issued.", serial))
		return
	case err != nil && !errors.Is(err, store.ErrAuditLog):
		s.log.Error("admin: revoke", "serial", serial, "err", err)
		s.renderCertificates(w, r, sess, http.StatusInternalServerError, "", "", "", "Not revoked: the revocation could not be recorded. Try again.")
		return
	}
	s.log.Warn("certificate revoked", "serial", serial, "by", sess.user.actor(), "reason", reason)
	s.renderCertificates(w, r, sess, http.StatusOK, "", strconv.FormatUint(serial, 10), fmt.Sprintf("Certificate %d is revoked.", serial), "")
}

// adminRevokeUser stops a person or workload: it suspends the identity
// (so that no certificate is issued to it, whatever key it brings, and the
// bastion refuses it and ends its live sessions, until an admin lifts the
// suspension), revokes the key of every certificate the user CA issued to
// it, and ends its signed-in sessions here. The suspension comes first, so
// that no certificate can be issued between the revocations and it.
//
// An admin cannot suspend themselves here: they would be refused at their
// next page and could not lift it. Nor can a suspended admin suspend
// anyone (the store checks both in the suspension's transaction), so the
// admin who suspends always remains able to sign in and lift it: the web
// never suspends the last admin able to sign in.
func (s *Server) adminRevokeUser(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := s.requireAdmin(w, r)
	if !ok {
		return
	}
	reason, err := revokeReason(r)
	if err != nil {
		s.renderCertificates(w, r, sess, http.StatusBadRequest, r.PostFormValue("identity"), "", "", "Not revoked: "+err.Error())
		return
	}
	id, err := parseIdentity(r.PostFormValue("identity"))
	if err != nil {
		s.renderCertificates(w, r, sess, http.StatusBadRequest, "", "", "", "Not revoked: "+err.Error())
		return
	}
	ctx := r.Context()
	var suspended string
	subject, err := store.ParseSuspensionSubject(id)
	if err != nil {
		suspended = fmt.Sprintf("%s cannot be suspended (%v); only its keys are revoked. ", id, err)
	} else {
		sp, fresh, err := s.o.Admin.Store.Suspend(ctx, store.Suspension{Subject: subject, Reason: reason, Actor: sess.user.actor()})
		switch {
		case errors.Is(err, store.ErrSelfSuspension):
			s.log.Warn("admin: self-suspension refused", "identity", subject, "by", sess.user.actor())
			s.renderCertificates(w, r, sess, http.StatusForbidden, id, "", "",
				"Not revoked: you cannot suspend yourself; another admin can, or use `sallyport ca revoke --identity` on the server.")
			return
		case errors.Is(err, store.ErrSuspended):
			s.log.Warn("admin: suspended admin refused", "identity", subject, "by", sess.user.actor())
			s.pages.error(w, http.StatusForbidden, "Suspended", "Your access is suspended: "+suspendedReason(err)+".")
			return
		case err != nil && !errors.Is(err, store.ErrAuditLog):
			s.log.Error("admin: suspend", "identity", subject, "err", err)
			s.renderCertificates(w, r, sess, http.StatusInternalServerError, id, "", "", "Not revoked: the suspension could not be recorded. Try again.")
			return
		}
		s.log.Warn("identity suspended", "identity", subject, "by", sess.user.actor(), "reason", reason)
		suspended = fmt.Sprintf("Suspended %s: no certificate is issued to it and the bastion refuses it and ends its sessions until an admin lifts the suspension on the identities page. ", sp.Describe())
		if !fresh {
			suspended = fmt.Sprintf("%s was already suspended by %s since %s (%q). ", sp.Describe(), sp.Actor, sp.Time.UTC().Format(time.RFC3339), sp.Reason)
		}
	}
	if strings.HasPrefix(id, store.CISubjectPrefix) {
		// No certificate is recorded under ci:OWNER/NAME: each of the
		// repository's workloads has its own identity.
		s.renderCertificates(w, r, sess, http.StatusOK, id, "", suspended+"No key is revoked: GitHub Actions certificates are short-lived, "+
			"and the bastion refuses every certificate of a suspended repository at once.", "")
		return
	}
	var sessionCA string
	if s.o.Admin.SessionCA != nil {
		sessionCA = ssh.FingerprintSHA256(s.o.Admin.SessionCA)
	}
	done, err := s.o.Admin.Store.RevokeIdentity(ctx, id, sessionCA, reason+" (everything of "+id+")", sess.user.actor())
	ended := s.sessions.endIdentity(id)
	if err != nil && !errors.Is(err, store.ErrAuditLog) {
		s.log.Error("admin: revoke everything of a user", "identity", id, "err", err)
		s.renderCertificates(w, r, sess, http.StatusInternalServerError, id, "", suspended+fmt.Sprintf("%d signed-in sessions ended.", ended),
			"No key could be revoked; try again.")
		return
	}
	s.log.Warn("everything of a user revoked", "identity", id, "keys", done.Keys, "certificates", done.Certificates,
		"session_certificates", done.Sessions, "sessions_ended", ended, "by", sess.user.actor(), "reason", reason)
	msg := suspended + fmt.Sprintf("Revoked %d keys of %s and with them all %d certificates issued to it; %d signed-in sessions ended.",
		done.Keys, id, done.Certificates, ended)
	if done.Certificates == 0 {
		msg = suspended + fmt.Sprintf("The user CA never issued a certificate to %s; %d signed-in sessions ended.", id, ended)
	}
	if done.Sessions > 0 {
		msg += fmt.Sprintf(" The bastion's %d session certificates for its connections are left as they are: each certifies a one-minute key of the bastion's own.", done.Sessions)
	}
	s.renderCertificates(w, r, sess, http.StatusOK, id, "", msg, "")
}

// endIdentity ends every browser session and CLI token of the identity
// (as signedIn.actor names it) and returns how many.
func (s *sessions) endIdentity(actor string) int {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	n := 0
	for k, e := range s.t.m {
		if e.v.user.actor() == actor {
			delete(s.t.m, k)
			n++
		}
	}
	return n
}

type auditData struct {
	Type, Actor, Subject, Since string
	Events                      []auditRow
	Page, Limit                 int
	PageNo                      int    // Page + 1, for people
	Prev, Next                  string // URLs; "" when there is none
}

type auditRow struct {
	audit.Event
	At     string
	Fields string
}

const (
	auditPageSize = 100
	maxAuditRows  = 10_000
)

func (s *Server) adminAudit(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := s.requireAdmin(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	d := auditData{Type: q.Get("type"), Actor: q.Get("actor"), Subject: q.Get("subject"), Since: q.Get("since"), Limit: auditPageSize}
	var errMsg string
	aq := store.AuditQuery{Type: truncate(d.Type, 64), Actor: truncate(d.Actor, 300), Subject: truncate(d.Subject, 300)}
	if d.Since != "" {
		t, err := parseSince(d.Since)
		if err != nil {
			errMsg = err.Error()
		}
		aq.Since = t
	}
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 {
		d.Limit = min(n, 1000)
	}
	if n, err := strconv.Atoi(q.Get("page")); err == nil && n > 0 {
		d.Page = n - 1
	}
	offset := d.Page * d.Limit
	if offset+d.Limit > maxAuditRows {
		errMsg = fmt.Sprintf("Only the newest %d matching events can be paged through; narrow the search (type, actor, subject, since).", maxAuditRows)
		d.Page, offset = 0, 0
	}
	aq.Limit = offset + d.Limit + 1
	if errMsg == "" {
		evs, err := s.o.Admin.Store.AuditEvents(r.Context(), aq)
		if err != nil {
			s.log.Error("admin: audit events", "err", err)
			errMsg = "The audit log could not be read."
		}
		more := len(evs) > offset+d.Limit
		if offset < len(evs) {
			evs = evs[offset:min(len(evs), offset+d.Limit)]
		} else {
			evs = nil
		}
		for _, e := range evs {
			d.Events = append(d.Events, auditRow{Event: e, At: e.Time.UTC().Format(time.RFC3339), Fields: formatFields(e.Fields)})
		}
		page := func(p int) string {
			v := url.Values{}
			for k, val := range map[string]string{"type": d.Type, "actor": d.Actor, "subject": d.Subject, "since": d.Since} {
				if val != "" {
					v.Set(k, val)
				}
			}
			v.Set("limit", strconv.Itoa(d.Limit))
			v.Set("page", strconv.Itoa(p+1))
			return "/admin/audit?" + v.Encode()
		}
		if d.Page > 0 {
			d.Prev = page(d.Page - 1)
		}
		if more && offset+2*d.Limit <= maxAuditRows {
			d.Next = page(d.Page + 1)
		}
	}
	d.PageNo = d.Page + 1
	status := http.StatusOK
	if errMsg != "" {
		status = http.StatusBadRequest
	}
	s.renderAdmin(w, status, "admin_audit", sess, true, "Audit log", "", errMsg, d)
}

// parseSince reads an RFC 3339 time or a date (UTC midnight).
func parseSince(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("since %q: give a date (2006-01-02) or an RFC 3339 time", truncate(s, 40))
}

func formatFields(m map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if b.Len() > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%s", k, m[k])
	}
	return b.String()
}
