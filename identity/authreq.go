package identity

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"

	"golang.org/x/oauth2"
)

// AuthRequest is the secret per-sign-in material of an authorization code
// flow. The web layer creates one when it sends a browser to the provider,
// binds it to that browser's session (server side or in an encrypted,
// HttpOnly cookie), and hands it back to Exchange at the callback.
//
// None of its fields may appear in logs; State appears in the provider URL
// by design, Verifier and Nonce never leave the server except to the
// provider's token endpoint (Verifier) or inside the authorization URL's
// hashed challenge (Nonce is sent in clear, as OIDC requires).
type AuthRequest struct {
	// State is the OAuth state parameter (CSRF protection).
	State string
	// Verifier is the PKCE code verifier; its S256 challenge is sent.
	Verifier string
	// Nonce binds the OIDC ID token to this request. GitHub OAuth ignores it.
	Nonce string
}

// NewAuthRequest returns fresh random state, PKCE verifier and nonce.
func NewAuthRequest() AuthRequest {
	return AuthRequest{
		State:    rand.Text(),
		Verifier: oauth2.GenerateVerifier(),
		Nonce:    rand.Text(),
	}
}

// CheckState compares the state received at the callback with r.State in
// constant time. It returns an error matching ErrState when they differ or
// either is empty.
func (r AuthRequest) CheckState(got string) error {
	if r.State == "" || got == "" {
		return fmt.Errorf("identity: %w: missing state", ErrState)
	}
	if subtle.ConstantTimeCompare([]byte(r.State), []byte(got)) != 1 {
		return fmt.Errorf("identity: %w", ErrState)
	}
	return nil
}

func (r AuthRequest) valid() error {
	switch {
	case r.State == "":
		return fmt.Errorf("identity: auth request has no state")
	case r.Verifier == "":
		return fmt.Errorf("identity: auth request has no PKCE verifier")
	}
	return nil
}
