// Package oidctest is a local OpenID Connect issuer with its own signing
// keys, for tests: discovery (/.well-known/openid-configuration), JWKS,
// an authorization endpoint that signs a registered user in without a page
// (login_hint=SUBJECT), and a token endpoint returning ID tokens with the
// request's nonce and PKCE checked. It also mints arbitrary signed tokens,
// such as GitHub Actions OIDC tokens, including broken ones.
//
// It listens on loopback only and does not import the testing package.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TB is the part of testing.TB that New uses.
type TB interface {
	Helper()
	Cleanup(func())
}

// Issuer is a running OIDC issuer. Its methods are safe for concurrent use.
type Issuer struct {
	// URL is the issuer identifier and base URL, without a trailing slash,
	// e.g. "http://127.0.0.1:41234".
	URL string

	srv *httptest.Server
	key *rsa.PrivateKey
	kid string

	mu      sync.Mutex
	now     func() time.Time
	clients map[string]client
	users   map[string]map[string]any // subject -> extra claims
	codes   map[string]*code
	tamper  func(claims map[string]any)
}

type client struct {
	secret, redirect string
}

type code struct {
	clientID, redirect, nonce, challenge, subject string
	used                                          bool
}

// New starts an issuer with a fresh RSA key and stops it when the test
// ends.
func New(t TB) *Issuer {
	t.Helper()
	key := pooledKey(false)
	i := &Issuer{
		key:     key,
		kid:     "k-" + rand.Text()[:8],
		now:     time.Now,
		clients: map[string]client{},
		users:   map[string]map[string]any{},
		codes:   map[string]*code{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", i.discovery)
	mux.HandleFunc("GET /jwks", i.jwks)
	mux.HandleFunc("GET /authorize", i.authorize)
	mux.HandleFunc("POST /token", i.token)
	i.srv = httptest.NewServer(mux)
	i.URL = i.srv.URL
	t.Cleanup(i.srv.Close)
	return i
}

// Client returns an HTTP client for the issuer.
func (i *Issuer) Client() *http.Client { return i.srv.Client() }

// SetClock sets the clock for iat and exp of the tokens it issues.
func (i *Issuer) SetClock(now func() time.Time) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.now = now
}

// RegisterClient registers an OAuth client with its exact redirect URI.
func (i *Issuer) RegisterClient(id, secret, redirect string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.clients[id] = client{secret, redirect}
}

// AddUser registers a subject and the extra claims its ID tokens carry
// (e.g. "email", "groups").
func (i *Issuer) AddUser(subject string, claims map[string]any) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.users[subject] = maps.Clone(claims)
}

// TamperIDTokens makes fn edit the claims of every later ID token before it
// is signed (e.g. to change the nonce); nil stops it.
func (i *Issuer) TamperIDTokens(fn func(claims map[string]any)) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.tamper = fn
}

// Sign signs claims as a JWT with the issuer's key.
func (i *Issuer) Sign(claims map[string]any) string {
	return sign(i.key, i.kid, claims)
}

// SignForged signs claims with a key the issuer does not publish, under
// the issuer's key ID: a token whose signature does not verify.
func (i *Issuer) SignForged(claims map[string]any) string {
	return sign(pooledKey(true), i.kid, claims)
}

// RSA key generation is slow (seconds under the race detector), so keys
// come from a small per-process pool: consecutive issuers get different
// keys, and forged signatures use a key no issuer has.
var keys struct {
	sync.Mutex
	pool   [4]*rsa.PrivateKey
	forged *rsa.PrivateKey
	next   int
}

func pooledKey(forged bool) *rsa.PrivateKey {
	keys.Lock()
	defer keys.Unlock()
	gen := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	}
	if forged {
		if keys.forged == nil {
			keys.forged = gen()
		}
		return keys.forged
	}
	n := keys.next % len(keys.pool)
	keys.next++
	if keys.pool[n] == nil {
		keys.pool[n] = gen()
	}
	return keys.pool[n]
}

func sign(key *rsa.PrivateKey, kid string, claims map[string]any) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		panic(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		panic(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return out
}

// ActionsClaims returns the claims of a GitHub Actions OIDC token from this
// issuer for audience: a push to main of example-oss/website in
// environment production, valid for five minutes from the issuer's clock.
// Edit the map to vary it.
func (i *Issuer) ActionsClaims(audience string) map[string]any {
	i.mu.Lock()
	now := i.now()
	i.mu.Unlock()
	return map[string]any{
		"iss":                   i.URL,
		"aud":                   audience,
		"sub":                   "repo:example-oss/website:environment:production",
		"iat":                   now.Unix(),
		"nbf":                   now.Add(-5 * time.Second).Unix(),
		"exp":                   now.Add(5 * time.Minute).Unix(),
		"jti":                   rand.Text(),
		"repository":            "example-oss/website",
		"repository_id":         "123456",
		"repository_owner":      "example-oss",
		"repository_owner_id":   "654321",
		"repository_visibility": "public",
		"ref":                   "refs/heads/main",
		"ref_type":              "branch",
		"sha":                   "0123456789abcdef0123456789abcdef01234567",
		"environment":           "production",
		"workflow":              "Deploy",
		"workflow_ref":          "example-oss/website/.github/workflows/deploy.yml@refs/heads/main",
		"job_workflow_ref":      "example-oss/website/.github/workflows/deploy.yml@refs/heads/main",
		"actor":                 "alice",
		"actor_id":              "1001",
		"event_name":            "push",
		"run_id":                "42",
		"run_number":            "7",
		"run_attempt":           "1",
		"runner_environment":    "github-hosted",
	}
}

func (i *Issuer) discovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{
		"issuer":                                i.URL,
		"authorization_endpoint":                i.URL + "/authorize",
		"token_endpoint":                        i.URL + "/token",
		"jwks_uri":                              i.URL + "/jwks",
		"response_types_supported":              []string{"code", "id_token"},
		"subject_types_supported":               []string{"public", "pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      []string{"openid", "profile", "email"},
		"claims_supported":                      []string{"sub", "aud", "exp", "iat", "iss", "nonce", "email", "groups", "repository", "ref"},
		"code_challenge_methods_supported":      []string{"S256"},
	})
}

func (i *Issuer) jwks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &i.key.PublicKey, KeyID: i.kid, Algorithm: "RS256", Use: "sig"}}})
}

// authorize signs in the subject named by login_hint, which must have been
// added, and redirects to the registered redirect URI with a code.
func (i *Issuer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	i.mu.Lock()
	c, ok := i.clients[q.Get("client_id")]
	_, known := i.users[q.Get("login_hint")]
	i.mu.Unlock()
	switch {
	case !ok || q.Get("redirect_uri") != c.redirect:
		http.Error(w, "unknown client or redirect_uri", http.StatusBadRequest)
		return
	case q.Get("response_type") != "code" || !strings.Contains(" "+q.Get("scope")+" ", " openid "):
		http.Error(w, "response_type code and scope openid are required", http.StatusBadRequest)
		return
	case !known:
		http.Error(w, "login_hint must name a registered subject", http.StatusBadRequest)
		return
	case q.Get("code_challenge") != "" && q.Get("code_challenge_method") != "S256":
		http.Error(w, "code_challenge_method must be S256", http.StatusBadRequest)
		return
	}
	k := rand.Text()
	i.mu.Lock()
	i.codes[k] = &code{clientID: q.Get("client_id"), redirect: c.redirect, nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), subject: q.Get("login_hint")}
	i.mu.Unlock()
	u, _ := url.Parse(c.redirect)
	v := u.Query()
	v.Set("code", k)
	v.Set("state", q.Get("state"))
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func (i *Issuer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, "invalid_request")
		return
	}
	f := r.PostForm
	id, secret := f.Get("client_id"), f.Get("client_secret")
	if bid, bsecret, ok := r.BasicAuth(); ok {
		id, _ = url.QueryUnescape(bid)
		secret, _ = url.QueryUnescape(bsecret)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	cl, ok := i.clients[id]
	if !ok || subtle.ConstantTimeCompare([]byte(cl.secret), []byte(secret)) != 1 {
		tokenErrorStatus(w, "invalid_client", http.StatusUnauthorized)
		return
	}
	c := i.codes[f.Get("code")]
	if c == nil || c.used || c.clientID != id || f.Get("redirect_uri") != c.redirect || f.Get("grant_type") != "authorization_code" {
		tokenError(w, "invalid_grant")
		return
	}
	c.used = true
	if c.challenge != "" {
		sum := sha256.Sum256([]byte(f.Get("code_verifier")))
		if base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
			tokenError(w, "invalid_grant")
			return
		}
	}
	access := rand.Text()
	ah := sha256.Sum256([]byte(access))
	now := i.now()
	claims := map[string]any{
		"iss":     i.URL,
		"sub":     c.subject,
		"aud":     id,
		"iat":     now.Unix(),
		"exp":     now.Add(5 * time.Minute).Unix(),
		"at_hash": base64.RawURLEncoding.EncodeToString(ah[:16]),
	}
	if c.nonce != "" {
		claims["nonce"] = c.nonce
	}
	maps.Copy(claims, i.users[c.subject])
	if i.tamper != nil {
		i.tamper(claims)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, map[string]any{
		"access_token": access,
		"token_type":   "Bearer",
		"expires_in":   300,
		"id_token":     sign(i.key, i.kid, claims),
	})
}

func tokenError(w http.ResponseWriter, code string) { tokenErrorStatus(w, code, http.StatusBadRequest) }

func tokenErrorStatus(w http.ResponseWriter, code string, status int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": fmt.Sprintf("oidctest: %s", code)})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
