package githubtest

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

// This file adds GitHub's OAuth web application flow:
//
//	GET  /login/oauth/authorize      sign-in page (pick a demo user), or
//	                                 login_hint=LOGIN to pick one without a click
//	POST /login/oauth/authorize      the page's choice
//	POST /login/oauth/access_token   code (+ PKCE verifier) for an access token
//
// As on GitHub: redirect_uri must have the registered callback's scheme,
// host and port (any port for a loopback IP callback) and a path at or
// below the callback's; a mismatch redirects to the registered callback
// with error=redirect_uri_mismatch. code_challenge_method must be S256.
// Codes expire after ten minutes and are single-use. Token errors are
// answered with status 200 and an error field, form-encoded unless the
// client accepts application/json.

// codeLifetime is how long an authorization code may be redeemed.
const codeLifetime = 10 * time.Minute

// OAuthApp is a registered OAuth app.
type OAuthApp struct {
	ClientID     string
	ClientSecret string
	// CallbackURL is the registered authorization callback URL.
	CallbackURL string
}

type authCode struct {
	clientID    string
	userID      int64
	redirectURI string // effective redirect URI
	explicit    bool   // redirect_uri was given to authorize
	challenge   string
	scopes      []string
	expires     time.Time
	used        bool
}

// RegisterOAuthApp registers an OAuth app, replacing one with the same
// client ID.
func (s *Server) RegisterOAuthApp(app OAuthApp) error {
	cb, err := url.Parse(app.CallbackURL)
	if app.ClientID == "" || app.ClientSecret == "" || err != nil || cb.Host == "" || (cb.Scheme != "http" && cb.Scheme != "https") {
		return fmt.Errorf("githubtest: OAuth app needs a client ID, a secret and an absolute http(s) callback URL")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := app
	s.ext().apps[app.ClientID] = &a
	return nil
}

func (s *Server) oauthRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /login/oauth/authorize", s.authorize)
	mux.HandleFunc("POST /login/oauth/authorize", s.authorize)
	mux.HandleFunc("POST /login/oauth/access_token", s.accessToken)
}

// redirectAllowed applies GitHub's redirect_uri rule.
func redirectAllowed(registered, given *url.URL) bool {
	if given.Scheme != registered.Scheme || given.User != nil || given.Fragment != "" ||
		!strings.EqualFold(given.Hostname(), registered.Hostname()) {
		return false
	}
	if ip := net.ParseIP(registered.Hostname()); ip == nil || !ip.IsLoopback() {
		if given.Port() != registered.Port() {
			return false
		}
	}
	gp := given.EscapedPath()
	if strings.Contains(gp, "/../") || strings.HasSuffix(gp, "/..") || strings.Contains(gp, "/./") || strings.Contains(strings.ToLower(gp), "%2e") {
		return false
	}
	if path.Clean("/"+gp) != "/"+strings.TrimPrefix(gp, "/") && gp != "" {
		return false
	}
	base := strings.TrimSuffix(registered.EscapedPath(), "/")
	return gp == base || gp == base+"/" || strings.HasPrefix(gp, base+"/")
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	f := r.Form
	s.mu.Lock()
	app := s.ext().apps[f.Get("client_id")]
	s.mu.Unlock()
	if app == nil {
		http.Error(w, "Not Found: no OAuth app with this client_id", http.StatusNotFound)
		return
	}
	cb, _ := url.Parse(app.CallbackURL)
	state := f.Get("state")
	redirect := cb
	if ru := f.Get("redirect_uri"); ru != "" {
		given, err := url.Parse(ru)
		if err != nil || !redirectAllowed(cb, given) {
			redirectError(w, r, cb, state, "redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application.")
			return
		}
		redirect = given
	}
	challenge, method := f.Get("code_challenge"), f.Get("code_challenge_method")
	if challenge != "" || method != "" {
		if method != "S256" {
			redirectError(w, r, redirect, state, "invalid_request", "code_challenge_method must be S256.")
			return
		}
		if b, err := base64.RawURLEncoding.DecodeString(challenge); err != nil || len(b) != sha256.Size {
			redirectError(w, r, redirect, state, "invalid_request", "code_challenge must be a base64url SHA-256 hash.")
			return
		}
	}
	var login string
	switch {
	case r.Method == http.MethodPost && f.Get("cancel") != "":
		redirectError(w, r, redirect, state, "access_denied", "The user has denied your application access.")
		return
	case r.Method == http.MethodPost:
		login = f.Get("user")
	default:
		login = f.Get("login_hint")
	}
	s.mu.Lock()
	u := s.users[strings.ToLower(login)]
	s.mu.Unlock()
	if u == nil || login == "" {
		s.signInPage(w, r, f, redirect)
		return
	}
	code := rand.Text()
	s.mu.Lock()
	s.ext().codes[code] = &authCode{
		clientID:    app.ClientID,
		userID:      u.ID,
		redirectURI: redirect.String(),
		explicit:    f.Get("redirect_uri") != "",
		challenge:   challenge,
		scopes:      strings.Fields(strings.ReplaceAll(f.Get("scope"), ",", " ")),
		expires:     s.now().Add(codeLifetime),
	}
	s.mu.Unlock()
	to := *redirect
	q := to.Query()
	q.Set("code", code)
	if state != "" {
		q.Set("state", state)
	}
	to.RawQuery = q.Encode()
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, to.String(), http.StatusFound)
}

func redirectError(w http.ResponseWriter, r *http.Request, to *url.URL, state, code, desc string) {
	u := *to
	q := u.Query()
	q.Set("error", code)
	q.Set("error_description", desc)
	q.Set("error_uri", "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors")
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

var signInTemplate = template.Must(template.New("signin").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in to GitHub (stand-in)</title>
<meta name="referrer" content="no-referrer">
<style>body{font-family:sans-serif;max-width:36em;margin:3em auto}button{display:block;width:100%;margin:.4em 0;padding:.6em;text-align:left}</style>
</head><body>
<h1>Sign in to GitHub</h1>
<p>This is Sallyport's <strong>stand-in for GitHub</strong>, for development only. Pick a demo user to continue to the application.</p>
<form method="post" action="/login/oauth/authorize">
{{range $k, $vs := .Params}}{{range $vs}}<input type="hidden" name="{{$k}}" value="{{.}}">
{{end}}{{end}}
{{range .Users}}<button type="submit" name="user" value="{{.Login}}"><strong>{{.Login}}</strong> (ID {{.ID}}){{range .Orgs}} · {{.}}{{end}}</button>
{{else}}<p>No demo users.</p>{{end}}
<button type="submit" name="cancel" value="1">Cancel</button>
</form>
</body></html>
`))

// signInPage shows the pick-a-user page. Its form posts back to the
// stand-in, which answers with a redirect to the application: a browser
// applies the page's form-action to that redirect too, so the policy names
// the application's origin beside the stand-in's own.
func (s *Server) signInPage(w http.ResponseWriter, r *http.Request, f url.Values, redirect *url.URL) {
	type row struct {
		Login string
		ID    int64
		Orgs  []string
	}
	params := url.Values{}
	for k, v := range f {
		if k != "user" && k != "cancel" {
			params[k] = v
		}
	}
	var rows []row
	s.mu.Lock()
	for _, u := range s.sortedUsers() {
		if u.Type != "User" {
			continue
		}
		rw := row{Login: u.Login, ID: u.ID}
		for k, m := range s.ext().members[u.ID] {
			desc := s.ext().orgs[k].login
			if m.state != StateActive {
				desc += " (" + m.state + ")"
			}
			if len(m.teams) > 0 {
				desc += ": " + strings.Join(m.teams, ", ")
			}
			rw.Orgs = append(rw.Orgs, desc)
		}
		slices.Sort(rw.Orgs)
		rows = append(rows, rw)
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' "+redirect.Scheme+"://"+redirect.Host)
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Frame-Options", "DENY")
	_ = signInTemplate.Execute(w, map[string]any{"Params": params, "Users": rows})
}

func (s *Server) accessToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	f := r.PostForm
	id, secret := f.Get("client_id"), f.Get("client_secret")
	if bid, bsecret, ok := r.BasicAuth(); ok {
		id, secret = bid, bsecret
	}
	s.mu.Lock()
	x := s.ext()
	app := x.apps[id]
	if app == nil || subtle.ConstantTimeCompare([]byte(app.ClientSecret), []byte(secret)) != 1 {
		s.mu.Unlock()
		tokenReply(w, r, map[string]string{"error": "incorrect_client_credentials", "error_description": "The client_id and/or client_secret passed are incorrect."})
		return
	}
	c := x.codes[f.Get("code")]
	if c == nil || c.used || c.clientID != id || !s.now().Before(c.expires) {
		s.mu.Unlock()
		tokenReply(w, r, map[string]string{"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."})
		return
	}
	c.used = true // single use, whatever follows
	s.mu.Unlock()
	if ru := f.Get("redirect_uri"); (c.explicit || ru != "") && ru != c.redirectURI {
		tokenReply(w, r, map[string]string{"error": "redirect_uri_mismatch", "error_description": "The redirect_uri MUST match the registered callback URL for this application."})
		return
	}
	if c.challenge != "" {
		v := f.Get("code_verifier")
		sum := sha256.Sum256([]byte(v))
		if v == "" || subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(c.challenge)) != 1 {
			tokenReply(w, r, map[string]string{"error": "bad_verification_code", "error_description": "The code_verifier does not match the code_challenge supplied in the authorization request."})
			return
		}
	}
	s.mu.Lock()
	u := s.userByIDLocked(c.userID)
	s.mu.Unlock()
	if u == nil {
		tokenReply(w, r, map[string]string{"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."})
		return
	}
	tok := "gho_" + rand.Text()
	s.mu.Lock()
	s.tokens[tok] = u
	s.ext().scopes[tok] = slices.Clone(c.scopes)
	s.mu.Unlock()
	tokenReply(w, r, map[string]string{"access_token": tok, "scope": strings.Join(c.scopes, ","), "token_type": "bearer"})
}

// tokenReply answers the token endpoint as GitHub does: status 200,
// JSON when the client accepts it, form-encoded otherwise.
func tokenReply(w http.ResponseWriter, r *http.Request, v map[string]string) {
	w.Header().Set("Cache-Control", "no-store")
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(v)
		return
	}
	q := url.Values{}
	for k, x := range v {
		q.Set(k, x)
	}
	w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	_, _ = w.Write([]byte(q.Encode()))
}
