package web

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sallyport/sallyport/standing"
	"github.com/sallyport/sallyport/store"
)

// The CLI sign-in (`sallyport login`) follows RFC 8252: the CLI listens on
// a random 127.0.0.1 port, sends the browser to /cli/login with that port,
// its own state and a PKCE (S256) challenge; after the GitHub sign-in the
// browser is redirected to http://127.0.0.1:PORT/callback with a one-time
// code and the CLI's state; the CLI redeems the code with its verifier at
// /api/v1/cli/token for a short-lived bearer token. Without a browser
// (--no-browser), the CLI asks /api/v1/cli/device for a device code and a
// short user code, the person enters the user code at /device in any
// browser, and the CLI redeems the device code the same way.

const (
	cliCodeTTL   = 2 * time.Minute
	deviceTTL    = 10 * time.Minute
	pollInterval = 2 * time.Second
)

var (
	cliStateRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)
	challengeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
)

// s256 is the PKCE S256 challenge of verifier.
func s256(verifier string) string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

func (s *Server) cliLogin(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	port, err := strconv.Atoi(q.Get("port"))
	if err != nil || port < 1024 || port > 65535 {
		s.pages.error(w, http.StatusBadRequest, "Cannot sign in the CLI", "The sign-in link from sallyport login is damaged (port). Run sallyport login again.")
		return
	}
	if !cliStateRE.MatchString(q.Get("state")) || !challengeRE.MatchString(q.Get("code_challenge")) || q.Get("code_challenge_method") != "S256" {
		s.pages.error(w, http.StatusBadRequest, "Cannot sign in the CLI", "The sign-in link from sallyport login is damaged (state or PKCE challenge). Run sallyport login again.")
		return
	}
	provider := "github"
	if name := q.Get("provider"); name != "" && name != "github" {
		if s.oidc(name) == nil {
			s.pages.error(w, http.StatusBadRequest, "Cannot sign in the CLI", "There is no sign-in provider of that name.")
			return
		}
		provider = "oidc:" + name
	}
	s.startSignIn(w, r, provider, "/", &cliRequest{port: port, state: q.Get("state"), challenge: q.Get("code_challenge")}, q.Get("login_hint"))
}

// finishCLILogin hands the CLI a one-time code through the loopback
// redirect. Only 127.0.0.1 and the port the CLI named are ever redirected
// to.
func (s *Server) finishCLILogin(w http.ResponseWriter, r *http.Request, u signedIn, cli *cliRequest) {
	code := rand.Text()
	if err := s.grants.put(code, &cliGrant{user: u, challenge: cli.challenge, approved: true}, cliCodeTTL); err != nil {
		s.pages.error(w, http.StatusServiceUnavailable, "Cannot sign in now", err.Error())
		return
	}
	target := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(cli.port), Path: "/callback",
		RawQuery: url.Values{"code": {code}, "state": {cli.state}}.Encode()}
	http.Redirect(w, r, target.String(), http.StatusSeeOther)
}

// deviceAlphabet avoids letters and digits that read alike.
const deviceAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

func newUserCode() string {
	b := make([]byte, 8)
	for i := range b {
		b[i] = deviceAlphabet[randIntn(len(deviceAlphabet))]
	}
	return string(b[:4]) + "-" + string(b[4:])
}

func randIntn(n int) int {
	var b [1]byte
	for {
		rand.Read(b[:])
		if int(b[0]) < 256-256%n {
			return int(b[0]) % n
		}
	}
}

func normalizeUserCode(s string) string {
	s = strings.ToUpper(strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, s))
	if len(s) != 8 {
		return ""
	}
	return s[:4] + "-" + s[4:]
}

type deviceResponse struct {
	DeviceCode      string `json:"device_code"`
	UserCode        string `json:"user_code"`
	VerificationURI string `json:"verification_uri"`
	ExpiresIn       int    `json:"expires_in"`
	Interval        int    `json:"interval"`
}

func (s *Server) cliDevice(w http.ResponseWriter, r *http.Request) {
	if !s.signInRL.allow(s.client(r)) {
		writeError(w, http.StatusTooManyRequests, "rate_limited", "too many sign-in attempts; wait a minute")
		return
	}
	var req struct {
		CodeChallenge string `json:"code_challenge"`
		Method        string `json:"code_challenge_method"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if !challengeRE.MatchString(req.CodeChallenge) || req.Method != "S256" {
		writeError(w, http.StatusBadRequest, "invalid_request", "an S256 code_challenge is required")
		return
	}
	deviceCode, userCode := rand.Text(), newUserCode()
	if err := s.grants.put(deviceCode, &cliGrant{challenge: req.CodeChallenge, userCode: userCode}, deviceTTL); err != nil {
		writeError(w, http.StatusServiceUnavailable, "busy", err.Error())
		return
	}
	if err := s.devices.put(userCode, deviceCode, deviceTTL); err != nil {
		writeError(w, http.StatusServiceUnavailable, "busy", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, deviceResponse{DeviceCode: deviceCode, UserCode: userCode,
		VerificationURI: s.base.String() + "/device", ExpiresIn: int(deviceTTL / time.Second), Interval: int(pollInterval / time.Second)})
}

// TokenResponse is the answer of /api/v1/cli/token.
type TokenResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	Login     string    `json:"login"`
}

// cliToken redeems a one-time code or an approved device code, with the
// PKCE verifier, for a short-lived bearer token.
func (s *Server) cliToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Code       string `json:"code"`
		DeviceCode string `json:"device_code"`
		Verifier   string `json:"code_verifier"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if req.Verifier == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "code_verifier is required (PKCE)")
		return
	}
	var g *cliGrant
	var ok bool
	switch {
	case req.Code != "" && req.DeviceCode == "":
		if !s.signInRL.allow(s.client(r)) {
			writeError(w, http.StatusTooManyRequests, "slow_down", "too many requests; wait a minute")
			return
		}
		g, ok = s.grants.take(req.Code) // one use, even when the verifier is wrong
	case req.DeviceCode != "" && req.Code == "":
		// Polling is paced per device code rather than by the sign-in
		// limit, which a patient CLI would otherwise exhaust.
		now := s.now()
		tooSoon := false
		s.grants.update(req.DeviceCode, func(g **cliGrant) bool {
			tooSoon = now.Sub((*g).lastPoll) < pollInterval/2
			c := **g
			c.lastPoll = now
			*g = &c
			return true
		})
		if tooSoon {
			writeError(w, http.StatusBadRequest, "slow_down", "poll less often")
			return
		}
		g, ok = s.grants.get(req.DeviceCode)
		if ok && !g.approved {
			writeError(w, http.StatusBadRequest, "authorization_pending", "the code has not been entered yet")
			return
		}
		if ok {
			s.grants.remove(req.DeviceCode)
			s.devices.remove(g.userCode)
		}
	default:
		writeError(w, http.StatusBadRequest, "invalid_request", "give exactly one of code and device_code")
		return
	}
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid_grant", "the code is unknown, expired or already used")
		return
	}
	if !constantEqual(s256(req.Verifier), g.challenge) {
		writeError(w, http.StatusBadRequest, "invalid_grant", "the code_verifier does not match the challenge")
		return
	}
	// The browser session that approved the code may predate a
	// suspension made since (by another server or on the CA's machine).
	if _, err := standing.Check(r.Context(), s.o.Standing, g.user.actor(), g.user.identity, standing.SourceSignIn); err != nil {
		if errors.Is(err, store.ErrSuspended) {
			s.recordSignInRefusal(r, g.user.provider, g.user.actor(), suspendedReason(err))
			writeError(w, http.StatusForbidden, reasonSuspended, "Sallyport access for your account is suspended: "+suspendedReason(err))
			return
		}
		s.log.Error("CLI token: standing", "who", g.user.actor(), "err", err)
		writeError(w, http.StatusServiceUnavailable, reasonError, "Sallyport could not check your account; try again in a minute")
		return
	}
	token, sess, err := s.sessions.create("cli", g.user, s.o.CLITokenTTL, s.now())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "busy", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, TokenResponse{Token: token, ExpiresAt: sess.expires.UTC(), Login: g.user.display()})
}

func (s *Server) devicePage(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := s.browserSession(r)
	if !ok {
		http.Redirect(w, r, "/login?return_to=%2Fdevice", http.StatusFound)
		return
	}
	s.pages.render(w, http.StatusOK, "device", pageData{Session: sess})
}

// deviceApprove lets the signed-in person approve a CLI sign-in by typing
// the code the CLI shows.
func (s *Server) deviceApprove(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := s.browserSession(r)
	if !ok {
		http.Redirect(w, r, "/login?return_to=%2Fdevice", http.StatusSeeOther)
		return
	}
	if !constantEqual(r.PostFormValue("csrf"), sess.csrf) {
		s.pages.error(w, http.StatusForbidden, "Refused", "The form was not sent from this site's page. Reload the page and try again.")
		return
	}
	if !s.signInRL.allow(s.client(r)) {
		s.pages.error(w, http.StatusTooManyRequests, "Too many attempts", "Wait a minute and try again.")
		return
	}
	// The browser session may predate a suspension made since (by
	// another server or on the CA's machine): refused as a sign-in is.
	if _, err := standing.Check(r.Context(), s.o.Standing, sess.user.actor(), sess.user.identity, standing.SourceSignIn); err != nil {
		if errors.Is(err, store.ErrSuspended) {
			s.refuseSignIn(w, r, sess.user.provider, sess.user.actor(), suspendedReason(err), http.StatusForbidden,
				"Sallyport access for your account is suspended: "+suspendedReason(err)+". The CLI sign-in was not approved.")
			return
		}
		s.log.Error("device approval: standing", "who", sess.user.actor(), "err", err)
		s.pages.error(w, http.StatusServiceUnavailable, "Not available now", "Sallyport could not check your account. Nothing was approved; try again in a minute.")
		return
	}
	userCode := normalizeUserCode(r.PostFormValue("user_code"))
	deviceCode, ok := s.devices.get(userCode)
	approved := ok && s.grants.update(deviceCode, func(g **cliGrant) bool {
		if (*g).approved {
			return false
		}
		c := **g
		c.approved = true
		c.user = sess.user
		*g = &c
		return true
	})
	if !approved {
		s.pages.render(w, http.StatusBadRequest, "device", pageData{Session: sess, Error: "That code is unknown, expired or already used. Check the code shown by sallyport login."})
		return
	}
	s.auditLogin(r.Context(), sess.user, true)
	s.pages.render(w, http.StatusOK, "device", pageData{Session: sess, Message: fmt.Sprintf("Approved. sallyport login (code %s) is now signed in as %s; you can close this page.", userCode, sess.user.display())})
}

func decodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("content type %q: send application/json", ct)
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

// APIError is the JSON body of every API error.
type APIError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, APIError{Error: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	enc.Encode(v) //nolint:errcheck // the client went away
}
