// Package standing is the one check, made before every policy decision
// for a person or workload, of what is known about them apart from the
// policy: whether an admin suspended them, and whether the GitHub login
// they have now is pinned to their numeric user ID. Web issuance (browser,
// CLI, CI token exchange) and the bastion (at login, on every new channel
// and in every re-check of live sessions) both call Check, so that the two
// can never disagree.
//
// The policy names people by GitHub login (`users: [carol]`), but logins
// can be renamed, and a freed login registered by someone else. The store
// pins each login to the numeric ID it was first seen with (store.LoginPin);
// an identity whose current login is pinned to another ID is decided as if
// it had no login, so `users:` entries naming that login do not apply to
// it, while its teams, which GitHub reports by ID, still count. Only an
// admin moves a pin (sallyport ca pin, or the admin pages).
package standing

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/store"
)

// Store is the part of the store Check reads (and, for a login seen for
// the first time, writes); *store.SQLite implements it.
type Store interface {
	Standing(ctx context.Context, identity, login string, githubID int64, source string) (store.Standing, error)
}

// Where a login was seen, recorded with its pin.
const (
	SourceSignIn    = "web sign-in"
	SourceIssuance  = "issuance"
	SourceBastion   = "bastion"
	SourceDirectory = "directory"
)

// Result is an identity cleared to be decided by the policy.
type Result struct {
	// Identity is who the policy decides for: the identity given, with
	// its login removed when the login is pinned to another GitHub user.
	// Keep the identity given for display and key IDs.
	Identity policy.Identity
	// Unpinned, when not "", says in plain words why the login matches
	// no `users:` entry of the policy, for the log and audit trail and
	// for the person refused.
	Unpinned string
	// Pin is the pin of the login; nil for CI and for GitHub users
	// without a login.
	Pin *store.LoginPin
	// NewPin is true when this check pinned the login.
	NewPin bool
}

// Check decides whether who, recorded as identity ("github:ID", a CI
// identity, ...), may be decided by the policy at all, and with which of
// its attributes. A suspended identity fails with a *store.SuspendedError
// (errors.Is store.ErrSuspended), whose message is fit to show. A GitHub
// user's login not pinned yet is pinned to who.ID, recording source. Any
// other error means the store could not be read; the caller must refuse.
func Check(ctx context.Context, st Store, identity string, who policy.Identity, source string) (Result, error) {
	var login string
	var id int64
	if who.CI == nil && who.ID > 0 && who.Login != "" && strings.HasPrefix(identity, "github:") {
		if identity != "github:"+strconv.FormatInt(who.ID, 10) {
			return Result{}, fmt.Errorf("standing: identity %s is not GitHub user %d", identity, who.ID)
		}
		login, id = who.Login, who.ID
	}
	s, err := st.Standing(ctx, identity, login, id, source)
	if err != nil {
		return Result{}, fmt.Errorf("standing: %w", err)
	}
	if s.Suspension != nil {
		return Result{}, &store.SuspendedError{Identity: identity, Suspension: *s.Suspension}
	}
	r := Result{Identity: who, Pin: s.Pin, NewPin: s.NewPin}
	if s.Pin != nil && s.Pin.GitHubID != id {
		r.Identity.Login = ""
		r.Unpinned = UnpinnedReason(login, id, *s.Pin)
	}
	return r, nil
}

// UnpinnedReason says why GitHub user id, who now has login, does not
// match the policy's `users:` entries naming it, login being pinned to
// another user by pin.
func UnpinnedReason(login string, id int64, pin store.LoginPin) string {
	first := fmt.Sprintf("login %s was first seen as GitHub user %d", login, pin.GitHubID)
	if pin.Actor != "" {
		first = fmt.Sprintf("login %s was pinned to GitHub user %d by %s", login, pin.GitHubID, pin.Actor)
	}
	return fmt.Sprintf("%s; user %d now has that login: policy 'users: %s' entries do not apply to them until an admin re-pins",
		first, id, login)
}
