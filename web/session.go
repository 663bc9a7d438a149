package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sallyport/sallyport/identity"
	"github.com/sallyport/sallyport/policy"
)

// maxEntries bounds each in-memory table, so a flood of sign-in attempts
// cannot exhaust memory; when full, expired entries are dropped and, if
// still full, the new entry is refused.
const maxEntries = 100_000

var errFull = errors.New("too many sign-ins in progress; try again in a minute")

// session is a signed-in person: a browser session or a CLI token.
type session struct {
	id         string
	secretHash [sha256.Size]byte
	kind       string // "browser" or "cli"
	user       signedIn
	csrf       string
	created    time.Time
	expires    time.Time
}

// table is a bounded, expiring map keyed by a random lookup key.
type table[V any] struct {
	mu  sync.Mutex
	m   map[string]tableEntry[V]
	now func() time.Time
}

type tableEntry[V any] struct {
	v       V
	expires time.Time
}

func newTable[V any](now func() time.Time) *table[V] {
	return &table[V]{m: map[string]tableEntry[V]{}, now: now}
}

func (t *table[V]) put(key string, v V, ttl time.Duration) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if len(t.m) >= maxEntries {
		for k, e := range t.m {
			if !now.Before(e.expires) {
				delete(t.m, k)
			}
		}
		if len(t.m) >= maxEntries {
			return errFull
		}
	}
	t.m[key] = tableEntry[V]{v: v, expires: now.Add(ttl)}
	return nil
}

func (t *table[V]) get(key string) (V, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[key]
	if ok && !t.now().Before(e.expires) {
		delete(t.m, key)
		ok = false
	}
	return e.v, ok
}

// take returns and removes the entry: one use only.
func (t *table[V]) take(key string) (V, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[key]
	delete(t.m, key)
	if ok && !t.now().Before(e.expires) {
		ok = false
	}
	return e.v, ok
}

func (t *table[V]) remove(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, key)
}

// update applies fn to the live entry under the lock.
func (t *table[V]) update(key string, fn func(*V) bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[key]
	if !ok || !t.now().Before(e.expires) {
		return false
	}
	if !fn(&e.v) {
		return false
	}
	t.m[key] = e
	return true
}

// newToken returns a fresh "ID.SECRET" token and the hash of its secret.
func newToken() (token, id string, hash [sha256.Size]byte) {
	id, secret := rand.Text(), rand.Text()
	return id + "." + secret, id, sha256.Sum256([]byte(secret))
}

// splitToken parses "ID.SECRET".
func splitToken(token string) (id, secret string, ok bool) {
	id, secret, ok = strings.Cut(token, ".")
	if !ok || len(id) < 16 || len(id) > 64 || len(secret) < 16 || len(secret) > 64 {
		return "", "", false
	}
	return id, secret, true
}

// sessions holds the signed-in sessions.
type sessions struct {
	t *table[*session]
}

func (s *sessions) create(kind string, u signedIn, ttl time.Duration, now time.Time) (string, *session, error) {
	token, id, hash := newToken()
	sess := &session{id: id, secretHash: hash, kind: kind, user: u,
		csrf: rand.Text(), created: now, expires: now.Add(ttl)}
	if err := s.t.put(id, sess, ttl); err != nil {
		return "", nil, err
	}
	return token, sess, nil
}

// lookup returns the live session of token, comparing the secret's hash in
// constant time.
func (s *sessions) lookup(token, kind string) (*session, bool) {
	id, secret, ok := splitToken(token)
	if !ok {
		return nil, false
	}
	sess, ok := s.t.get(id)
	if !ok || sess.kind != kind {
		return nil, false
	}
	h := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(h[:], sess.secretHash[:]) != 1 {
		return nil, false
	}
	return sess, true
}

func (s *sessions) end(token string) {
	if id, _, ok := splitToken(token); ok {
		s.t.remove(id)
	}
}

// signedIn is an identity established by a provider.
type signedIn struct {
	identity policy.Identity
	name     string // display name, may be empty
	// provider is "github" or "oidc:NAME"; empty for CI.
	provider string
	// oidcKey is the OIDC identity, issuer#subject; empty otherwise.
	oidcKey string
	// oidcUser is the OIDC user name, for display and key IDs only.
	oidcUser string
}

// actor is the stable identity recorded in the store and audit log:
// "github:ID" (never the login, which can be renamed), "oidc:ISSUER#SUBJECT"
// or the CI workload.
func (u signedIn) actor() string {
	switch {
	case u.identity.CI != nil:
		return ciIdentity(u.identity.CI)
	case u.oidcKey != "":
		return "oidc:" + u.oidcKey
	}
	return fmt.Sprintf("github:%d", u.identity.ID)
}

// display names the person on pages.
func (u signedIn) display() string {
	switch {
	case u.identity.Login != "":
		return u.identity.Login
	case u.oidcUser != "":
		return u.oidcUser
	}
	return u.oidcKey
}

// pendingLogin is a sign-in in progress, between the redirect to GitHub
// and the callback. It is keyed by the OAuth state and bound to the
// browser by the hash of a random cookie value.
type pendingLogin struct {
	req      identity.AuthRequest
	binding  [sha256.Size]byte
	provider string // "github" or "oidc:NAME"
	returnTo string
	cli      *cliRequest // set when the sign-in is for `sallyport login`
}

// cliRequest is the loopback half of a `sallyport login`: where to deliver
// the one-time code, the CLI's own state, and its PKCE challenge.
type cliRequest struct {
	port      int
	state     string
	challenge string
}

// cliGrant is a one-time code handed to the CLI (through the loopback
// redirect or, approved, through the device flow), redeemable with the PKCE
// verifier for a CLI token.
type cliGrant struct {
	user      signedIn
	challenge string
	approved  bool   // device flow: set when the person enters the code
	userCode  string // device flow: the code the person types
	lastPoll  time.Time
}

func constantEqual(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
