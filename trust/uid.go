package trust

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// GitHubAccount is the GitHub account an admin key names.
type GitHubAccount struct {
	// Login is the login named in the user ID, for people to read; it is
	// not what the admin role is bound to.
	Login string
	// ID is GitHub's immutable numeric user ID; the admin role is bound to
	// it.
	ID int64
}

func (a GitHubAccount) String() string {
	return "github:" + a.Login + "/" + strconv.FormatInt(a.ID, 10)
}

// ErrNoGitHubAccount means a user ID does not name a GitHub account in the
// form Sallyport requires.
var ErrNoGitHubAccount = errors.New("user ID does not name a GitHub account as \"Name (github:LOGIN/ID) <email>\"")

// userIDPattern is "Name (github:login/12345) <email>" with the e-mail part
// optional. GitHub logins are 1-39 letters, digits and single inner hyphens.
var userIDPattern = regexp.MustCompile(`^([^()<>]*[^()<>\s]) \(github:([A-Za-z0-9](?:-?[A-Za-z0-9]){0,38})/([1-9][0-9]{0,18})\)(?: <([^<>\s]+)>)?$`)

// ParseUserID returns the GitHub account named by an admin user ID of the
// form "Name (github:LOGIN/ID) <email>", or an error wrapping
// ErrNoGitHubAccount.
func ParseUserID(uid string) (GitHubAccount, error) {
	m := userIDPattern.FindStringSubmatch(uid)
	if m == nil {
		return GitHubAccount{}, fmt.Errorf("%q: %w", uid, ErrNoGitHubAccount)
	}
	id, err := strconv.ParseInt(m[3], 10, 64)
	if err != nil {
		return GitHubAccount{}, fmt.Errorf("%q: GitHub ID: %w", uid, ErrNoGitHubAccount)
	}
	return GitHubAccount{Login: m[2], ID: id}, nil
}
