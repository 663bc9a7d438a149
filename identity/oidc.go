package identity

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/sallyport/sallyport/policy"
)

// OIDCConfig configures sign-in with a generic OpenID Connect provider.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL, exactly as in its ID tokens;
	// discovery reads Issuer + "/.well-known/openid-configuration".
	// Required.
	Issuer string
	// ClientID and ClientSecret identify Sallyport at the provider.
	// ClientID is required; the secret may be empty for public clients.
	ClientID     string
	ClientSecret string
	// RedirectURL is the callback URL, from configuration only. Required.
	RedirectURL string
	// Scopes to request. Nil means openid, profile and email; "openid" is
	// always added.
	Scopes []string
	// GroupsClaim names the ID token claim (a string or list of strings)
	// whose values play the role of teams. Empty means groups are not read
	// and the identity has no teams.
	GroupsClaim string
	// HTTPClient makes every request to the provider. Nil means a client
	// with a 15-second timeout.
	HTTPClient *http.Client
	// Now is the clock for token expiry. Nil means time.Now.
	Now func() time.Time
}

// OIDC signs people in with a generic OpenID Connect provider: discovery,
// authorization code flow with state, nonce and PKCE (S256), ID token
// verification, and the nonce check go-oidc leaves to its caller. The
// provider is discovered on first use and the result kept. It is safe for
// concurrent use.
type OIDC struct {
	cfg      OIDCConfig
	provider lazyProvider
}

// OIDCUser is a person signed in with an OIDC provider. The identity is
// (Issuer, Subject); email and names are for display only and never
// identify anyone.
type OIDCUser struct {
	Issuer  string
	Subject string
	// Email is the email claim; EmailVerified its email_verified claim.
	Email         string
	EmailVerified bool
	// Name and PreferredUsername are display claims.
	Name              string
	PreferredUsername string
	// Groups are the values of the configured groups claim, in token order.
	Groups []string
}

// Key returns the stable identifier of the user: issuer and subject.
func (u *OIDCUser) Key() string { return u.Issuer + "#" + u.Subject }

// Identity returns the policy identity of u: its groups as teams. Login and
// ID stay empty on purpose: policy `users` entries are GitHub logins, and an
// OIDC provider's user names must not be able to claim them.
func (u *OIDCUser) Identity() policy.Identity {
	return policy.Identity{Teams: append([]string(nil), u.Groups...)}
}

// NewOIDC checks cfg. It does not contact the provider.
func NewOIDC(cfg OIDCConfig) (*OIDC, error) {
	var errs []error
	if err := checkAbsURL(cfg.Issuer); err != nil {
		errs = append(errs, fmt.Errorf("issuer: %w", err))
	}
	if cfg.ClientID == "" {
		errs = append(errs, errors.New("client ID is empty"))
	}
	if err := checkAbsURL(cfg.RedirectURL); err != nil {
		errs = append(errs, fmt.Errorf("redirect URL: %w", err))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("identity: oidc: %w", errors.Join(errs...))
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	scopes := []string{oidc.ScopeOpenID}
	if cfg.Scopes == nil {
		scopes = append(scopes, "profile", "email")
	}
	for _, s := range cfg.Scopes {
		if s != oidc.ScopeOpenID {
			scopes = append(scopes, s)
		}
	}
	cfg.Scopes = scopes
	return &OIDC{cfg: cfg, provider: lazyProvider{issuer: cfg.Issuer, client: cfg.HTTPClient}}, nil
}

// Issuer returns the configured issuer.
func (o *OIDC) Issuer() string { return o.cfg.Issuer }

func (o *OIDC) oauth(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     o.cfg.ClientID,
		ClientSecret: o.cfg.ClientSecret,
		RedirectURL:  o.cfg.RedirectURL,
		Scopes:       o.cfg.Scopes,
		Endpoint:     p.Endpoint(),
	}
}

// AuthCodeURL returns the provider's authorization URL for req: state,
// nonce and the S256 challenge of the verifier. It discovers the provider
// on first use; a failure matches ErrUpstream.
func (o *OIDC) AuthCodeURL(ctx context.Context, req AuthRequest) (string, error) {
	if err := req.valid(); err != nil {
		return "", err
	}
	if req.Nonce == "" {
		return "", errors.New("identity: auth request has no nonce")
	}
	p, err := o.provider.get(ctx)
	if err != nil {
		return "", err
	}
	return o.oauth(p).AuthCodeURL(req.State, oidc.Nonce(req.Nonce), oauth2.S256ChallengeOption(req.Verifier)), nil
}

// Exchange redeems the code with req's verifier, verifies the ID token
// (signature, issuer, audience, expiry), checks its nonce against req and,
// when present, its at_hash against the access token. The caller must have
// checked the callback's state with req.CheckState first.
//
// Errors match ErrRefused, ErrNonce or ErrUpstream.
func (o *OIDC) Exchange(ctx context.Context, code string, req AuthRequest) (*OIDCUser, error) {
	if err := req.valid(); err != nil {
		return nil, err
	}
	if req.Nonce == "" {
		return nil, errors.New("identity: auth request has no nonce")
	}
	if code == "" {
		return nil, fmt.Errorf("identity: oidc: %w: no authorization code", ErrRefused)
	}
	p, err := o.provider.get(ctx)
	if err != nil {
		return nil, err
	}
	cctx := oidc.ClientContext(ctx, o.cfg.HTTPClient)
	tok, err := o.oauth(p).Exchange(context.WithValue(cctx, oauth2.HTTPClient, o.cfg.HTTPClient), code, oauth2.VerifierOption(req.Verifier))
	if err != nil {
		return nil, fmt.Errorf("identity: oidc: exchanging code: %w", tokenError(err))
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return nil, fmt.Errorf("identity: oidc: %w: token response has no id_token", ErrRefused)
	}
	idt, err := p.VerifierContext(cctx, &oidc.Config{ClientID: o.cfg.ClientID, Now: o.cfg.Now}).Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("identity: oidc: %w: ID token: %w", ErrRefused, err)
	}
	if len(idt.Audience) > 1 {
		// OIDC Core 3.1.3.7: with several audiences the token must name
		// us as its authorized party.
		var azp struct {
			AZP string `json:"azp"`
		}
		if err := idt.Claims(&azp); err != nil || azp.AZP != o.cfg.ClientID {
			return nil, fmt.Errorf("identity: oidc: %w: ID token for several audiences without azp %q", ErrRefused, o.cfg.ClientID)
		}
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(req.Nonce)) != 1 {
		return nil, fmt.Errorf("identity: oidc: %w", ErrNonce)
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, fmt.Errorf("identity: oidc: %w: at_hash: %w", ErrRefused, err)
		}
	}
	if idt.Subject == "" {
		return nil, fmt.Errorf("identity: oidc: %w: ID token has no subject", ErrRefused)
	}
	return o.user(idt)
}

func (o *OIDC) user(idt *oidc.IDToken) (*OIDCUser, error) {
	var std struct {
		Email             string `json:"email"`
		EmailVerified     any    `json:"email_verified"`
		Name              string `json:"name"`
		PreferredUsername string `json:"preferred_username"`
	}
	if err := idt.Claims(&std); err != nil {
		return nil, fmt.Errorf("identity: oidc: %w: ID token claims: %w", ErrRefused, err)
	}
	u := &OIDCUser{
		Issuer:            idt.Issuer,
		Subject:           idt.Subject,
		Email:             std.Email,
		Name:              std.Name,
		PreferredUsername: std.PreferredUsername,
	}
	// Some providers send email_verified as a string.
	switch v := std.EmailVerified.(type) {
	case bool:
		u.EmailVerified = v
	case string:
		u.EmailVerified = v == "true"
	}
	if o.cfg.GroupsClaim != "" {
		var all map[string]json.RawMessage
		if err := idt.Claims(&all); err != nil {
			return nil, fmt.Errorf("identity: oidc: %w: ID token claims: %w", ErrRefused, err)
		}
		groups, err := stringsClaim(all[o.cfg.GroupsClaim])
		if err != nil {
			return nil, fmt.Errorf("identity: oidc: %w: claim %q: %w", ErrRefused, o.cfg.GroupsClaim, err)
		}
		u.Groups = groups
	}
	return u, nil
}

// stringsClaim reads a claim that is absent, null, a string or a list of
// strings. Anything else is an error rather than silently no groups.
func stringsClaim(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil, nil
		}
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("not a string or a list of strings")
	}
	out := list[:0]
	for _, s := range list {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// lazyProvider discovers an OIDC provider on first use and keeps the
// result; a failed discovery is retried at the next use.
type lazyProvider struct {
	issuer string
	client *http.Client

	mu sync.Mutex
	p  *oidc.Provider
}

func (l *lazyProvider) get(ctx context.Context) (*oidc.Provider, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.p != nil {
		return l.p, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, l.client), l.issuer)
	if err != nil {
		return nil, fmt.Errorf("identity: oidc discovery of %s: %w: %w", l.issuer, ErrUpstream, err)
	}
	l.p = p
	return p, nil
}
