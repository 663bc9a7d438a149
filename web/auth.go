package web

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/identity"
	"github.com/sallyport/sallyport/standing"
	"github.com/sallyport/sallyport/store"
)

// loginTTL bounds the time between leaving for GitHub and coming back.
const loginTTL = 10 * time.Minute

// safeReturnTo reports whether p is a same-origin relative path the server
// may redirect to after sign-in: it starts with a single '/', and neither
// it nor its percent-decoded form holds "//", a backslash, a scheme, or a
// control character.
func safeReturnTo(p string) bool {
	if p == "" || len(p) > 1024 || p[0] != '/' {
		return false
	}
	check := func(s string) bool {
		if strings.HasPrefix(s, "//") || strings.ContainsAny(s, "\\") {
			return false
		}
		for _, c := range s {
			if c < 0x20 || c == 0x7f {
				return false
			}
		}
		if i := strings.IndexAny(s, "?#"); i >= 0 {
			s = s[:i]
		}
		return !strings.Contains(s, ":") && !strings.Contains(s, "//")
	}
	if !check(p) {
		return false
	}
	// Decode repeatedly: "/%2F%2Fevil" or "/%252F..." must fail as well.
	for range 3 {
		d, err := url.PathUnescape(p)
		if err != nil {
			return false
		}
		if d == p {
			break
		}
		if !check(d) {
			return false
		}
		p = d
	}
	u, err := url.Parse(p)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil
}

var loginHintRE = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$`)

// login starts a browser sign-in with GitHub: it binds a fresh state and
// PKCE verifier to this browser with a cookie and sends it to GitHub.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	s.loginWith(w, r, "github")
}

// loginOIDC starts a sign-in with the named OIDC provider.
func (s *Server) loginOIDC(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if s.oidc(name) == nil {
		s.pages.error(w, http.StatusNotFound, "Cannot sign in", "There is no sign-in provider of that name.")
		return
	}
	s.loginWith(w, r, "oidc:"+name)
}

func (s *Server) loginWith(w http.ResponseWriter, r *http.Request, provider string) {
	returnTo := r.URL.Query().Get("return_to")
	if returnTo == "" {
		returnTo = "/"
	}
	if !safeReturnTo(returnTo) {
		s.pages.error(w, http.StatusBadRequest, "Cannot sign in", "The address to return to after signing in must be a page of this site.")
		return
	}
	s.startSignIn(w, r, provider, returnTo, nil, r.URL.Query().Get("login_hint"))
}

func (s *Server) oidc(name string) OIDCSignIn {
	for _, p := range s.o.OIDC {
		if p.Name == name {
			return p.SignIn
		}
	}
	return nil
}

// providerName names the provider for people.
func providerName(provider string) string {
	if name, ok := strings.CutPrefix(provider, "oidc:"); ok {
		return "The sign-in provider " + name
	}
	return "GitHub"
}

// metricProvider is the provider's label value: "github" or "oidc".
func metricProvider(provider string) string {
	if strings.HasPrefix(provider, "oidc:") {
		return "oidc"
	}
	return "github"
}

func (s *Server) startSignIn(w http.ResponseWriter, r *http.Request, provider, returnTo string, cli *cliRequest, hint string) {
	if !s.signInRL.allow(s.client(r)) {
		s.metrics.signIn(metricProvider(provider), "rate_limited")
		s.pages.error(w, http.StatusTooManyRequests, "Too many sign-ins", "Too many sign-in attempts from your address. Wait a minute and try again.")
		return
	}
	if hint != "" && !loginHintRE.MatchString(hint) {
		hint = ""
	}
	req := identity.NewAuthRequest()
	var target string
	if name, ok := strings.CutPrefix(provider, "oidc:"); ok {
		o := s.oidc(name)
		if o == nil {
			s.pages.error(w, http.StatusNotFound, "Cannot sign in", "There is no sign-in provider of that name.")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
		defer cancel()
		u, err := o.AuthCodeURL(ctx, req)
		if err != nil {
			s.log.Warn("oidc discovery", "provider", name, "err", err)
			s.pages.error(w, http.StatusBadGateway, "Cannot sign in now", "The sign-in provider did not answer properly. Try again in a minute.")
			return
		}
		if hint != "" {
			u += "&" + url.Values{"login_hint": {hint}}.Encode()
		}
		target = u
	} else {
		target = s.o.GitHub.AuthCodeURL(req, hint)
	}
	binding := rand.Text()
	p := &pendingLogin{req: req, binding: bindingHash(binding), provider: provider, returnTo: returnTo, cli: cli}
	if err := s.pending.put(req.State, p, loginTTL); err != nil {
		s.pages.error(w, http.StatusServiceUnavailable, "Cannot sign in now", err.Error())
		return
	}
	s.setCookie(w, loginCookie, binding, loginTTL)
	http.Redirect(w, r, target, http.StatusFound)
}

// callback finishes a GitHub sign-in.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	s.finishSignIn(w, r, "github", func(ctx context.Context, code string, req identity.AuthRequest) (signedIn, error) {
		u, err := s.o.GitHub.Exchange(ctx, code, req)
		if err != nil {
			return signedIn{}, err
		}
		return signedIn{identity: u.Identity(), name: u.Name, provider: "github"}, nil
	})
}

// oidcCallback finishes an OIDC sign-in. The identity is (issuer,
// subject); the groups claim plays the role of teams.
func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	o := s.oidc(name)
	if o == nil {
		s.pages.error(w, http.StatusNotFound, "Cannot sign in", "There is no sign-in provider of that name.")
		return
	}
	s.finishSignIn(w, r, "oidc:"+name, func(ctx context.Context, code string, req identity.AuthRequest) (signedIn, error) {
		u, err := o.Exchange(ctx, code, req)
		if err != nil {
			return signedIn{}, err
		}
		display := u.PreferredUsername
		if display == "" && u.EmailVerified {
			display = u.Email
		}
		return signedIn{identity: u.Identity(), name: u.Name, provider: "oidc:" + name, oidcKey: u.Key(), oidcUser: display}, nil
	})
}

// finishSignIn checks a callback: the state must be one this server issued
// for this provider, not used before, and bound to this browser; the code
// is redeemed with the PKCE verifier (and, for OIDC, the nonce checked).
// The answer is a redirect, so the code leaves the address bar at once.
func (s *Server) finishSignIn(w http.ResponseWriter, r *http.Request, provider string,
	exchange func(ctx context.Context, code string, req identity.AuthRequest) (signedIn, error)) {
	q := r.URL.Query()
	state, code := q.Get("state"), q.Get("code")
	s.clearCookie(w, loginCookie)
	p, ok := s.pending.take(state) // one use: a replayed state finds nothing
	if !ok || p.provider != provider {
		s.refuseSignIn(w, r, provider, "", "unknown or already used sign-in state", http.StatusBadRequest,
			"This sign-in link is not valid any more (it was used already, expired, or did not come from this server). Start again.")
		return
	}
	c, err := r.Cookie(s.cookieName(loginCookie))
	if err != nil || bindingHash(c.Value) != p.binding || p.req.CheckState(state) != nil {
		s.refuseSignIn(w, r, provider, "", "sign-in state not bound to this browser", http.StatusBadRequest,
			"This sign-in was started in another browser. Start again from this one.")
		return
	}
	if e := q.Get("error"); e != "" {
		s.refuseSignIn(w, r, provider, "", "provider refused: "+truncate(e, 64), http.StatusForbidden,
			providerName(provider)+" did not let you sign in (you may have cancelled). Start again to retry.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	user, err := exchange(ctx, code, p.req)
	if err != nil {
		var nm *identity.NotMemberError
		switch {
		case errors.As(err, &nm):
			s.refuseSignIn(w, r, provider, "github-login:"+nm.Login, err.Error(), http.StatusForbidden,
				fmt.Sprintf("Your GitHub account %s is not a member of the %s organisation%s, so Sallyport cannot give you access. Ask an organisation owner to add you.",
					nm.Login, nm.Org, pendingNote(nm.Pending)))
		case errors.Is(err, identity.ErrNotMember):
			s.refuseSignIn(w, r, provider, "", err.Error(), http.StatusForbidden, "Your account is not a member of the organisation.")
		case errors.Is(err, identity.ErrUpstream):
			s.refuseSignIn(w, r, provider, "", err.Error(), http.StatusBadGateway, providerName(provider)+" did not answer properly. Nothing was issued; try again in a minute.")
		default:
			s.refuseSignIn(w, r, provider, "", err.Error(), http.StatusForbidden, providerName(provider)+" did not confirm the sign-in. Start again.")
		}
		return
	}
	// A suspended identity is refused here, so that it holds no session
	// or CLI token at all; a GitHub login seen for the first time is
	// pinned to the user's numeric ID.
	st, err := standing.Check(ctx, s.o.Standing, user.actor(), user.identity, standing.SourceSignIn)
	switch {
	case errors.Is(err, store.ErrSuspended):
		s.refuseSignIn(w, r, provider, user.actor(), suspendedReason(err), http.StatusForbidden,
			"Sallyport access for your account is suspended: "+suspendedReason(err)+".")
		return
	case err != nil:
		s.log.Error("sign-in: standing", "who", user.actor(), "err", err)
		s.refuseSignIn(w, r, provider, user.actor(), "the store could not be read", http.StatusServiceUnavailable,
			"Sallyport could not check your account. Nothing was issued; try again in a minute.")
		return
	case st.Unpinned != "":
		s.auditUnpinned(ctx, user, user.identity.Login, st.Unpinned, "sign-in")
	}
	token, _, err := s.sessions.create("browser", user, s.o.SessionTTL, s.now())
	if err != nil {
		s.pages.error(w, http.StatusServiceUnavailable, "Cannot sign in now", err.Error())
		return
	}
	s.metrics.signIn(metricProvider(provider), "ok")
	s.auditLogin(r.Context(), user, p.cli != nil)
	s.setCookie(w, sessionCookie, token, s.o.SessionTTL)
	if p.cli != nil {
		s.finishCLILogin(w, r, user, p.cli)
		return
	}
	http.Redirect(w, r, p.returnTo, http.StatusSeeOther)
}

func pendingNote(pending bool) string {
	if pending {
		return " (your invitation is still pending: accept it on GitHub first)"
	}
	return ""
}

func (s *Server) auditLogin(ctx context.Context, u signedIn, cli bool) {
	via := "web"
	if cli {
		via = "cli"
	}
	e := audit.Event{Type: audit.TypeLogin, Actor: u.actor(), Subject: u.display(), Outcome: audit.OutcomeOK,
		Fields: map[string]string{"provider": u.provider, "via": via, "teams": strings.Join(u.identity.Teams, ",")}}
	if err := s.o.Audit.Audit(ctx, e); err != nil {
		s.log.Error("audit sign-in", "err", err)
	}
}

// refuseSignIn answers a failed sign-in with a page saying why, and logs
// and audits it. reason is for the record and never holds a code or token.
func (s *Server) refuseSignIn(w http.ResponseWriter, r *http.Request, provider, who, reason string, status int, message string) {
	s.recordSignInRefusal(r, provider, who, reason)
	s.pages.error(w, status, "Sign-in refused", message)
}

// recordSignInRefusal counts, logs and audits a refused sign-in.
func (s *Server) recordSignInRefusal(r *http.Request, provider, who, reason string) {
	s.metrics.signIn(metricProvider(provider), "refused")
	if who == "" {
		who = "anonymous@" + s.client(r).String()
	}
	s.log.Warn("sign-in refused", "who", who, "reason", reason)
	e := audit.Event{Type: audit.TypeLogin, Actor: who, Outcome: audit.OutcomeDenied, Reason: truncate(reason, 500),
		Fields: map[string]string{"provider": provider, "client": s.client(r).String()}}
	if err := s.o.Audit.Audit(r.Context(), e); err != nil {
		s.log.Error("audit sign-in refusal", "err", err)
	}
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	sess, token, ok := s.browserSession(r)
	if ok {
		if !constantEqual(r.PostFormValue("csrf"), sess.csrf) {
			s.pages.error(w, http.StatusForbidden, "Refused", "The form was not sent from this site's page. Reload the page and try again.")
			return
		}
		s.sessions.end(token)
	}
	s.clearCookie(w, sessionCookie)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
