package identity

import (
	"errors"
	"fmt"
)

// Errors callers branch on with errors.Is. Messages of wrapped errors add
// detail for logs; they never contain tokens or authorization codes.
var (
	// ErrNotMember means the user is not an active member of the configured
	// organisation (a pending invitation is not membership). The sign-in
	// must be refused with a page that says so. See NotMemberError.
	ErrNotMember = errors.New("not a member of the organisation")
	// ErrUpstream means the identity provider did not answer properly:
	// network failure, timeout, a 5xx status, or malformed JSON. Nothing
	// was established; the user may try again later.
	ErrUpstream = errors.New("identity provider did not answer properly")
	// ErrRefused means the identity provider refused the sign-in: a bad,
	// expired or reused code, a wrong PKCE verifier, wrong client
	// credentials, or an ID token that failed verification.
	ErrRefused = errors.New("sign-in refused by the identity provider")
	// ErrState means the state returned to the callback is not the one
	// bound to this browser session (forged, replayed or missing).
	ErrState = errors.New("sign-in state does not match")
	// ErrNonce means the ID token's nonce is not the one sent with the
	// authorization request: the token was issued for another sign-in.
	ErrNonce = errors.New("ID token nonce does not match")
	// ErrInvalidToken means a bearer token (GitHub Actions OIDC token) was
	// refused: bad signature, wrong issuer or audience, expired, or missing
	// required claims.
	ErrInvalidToken = errors.New("invalid token")
	// ErrNotReady is returned by Directory.Lookup before the first
	// successful refresh: the directory knows nothing yet.
	ErrNotReady = errors.New("organisation directory not loaded yet")
)

// NotMemberError says why a GitHub user is not a member of the organisation.
// It matches ErrNotMember with errors.Is.
type NotMemberError struct {
	Login string
	Org   string
	// Pending is true when the user has been invited but has not accepted.
	Pending bool
}

func (e *NotMemberError) Error() string {
	if e.Pending {
		return fmt.Sprintf("github user %s has a pending invitation to organisation %s but has not accepted it", e.Login, e.Org)
	}
	return fmt.Sprintf("github user %s is not a member of organisation %s", e.Login, e.Org)
}

// Is makes errors.Is(err, ErrNotMember) true.
func (e *NotMemberError) Is(target error) bool { return target == ErrNotMember }
