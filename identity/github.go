package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/google/go-github/v57/github"
	"golang.org/x/oauth2"

	"github.com/sallyport/sallyport/policy"
)

// Default GitHub locations. GitHub Enterprise Server uses
// https://HOST/ and https://HOST/api/v3/.
const (
	GitHubWebURL = "https://github.com/"
	GitHubAPIURL = "https://api.github.com/"
)

// maxPages bounds every paginated GitHub listing. An organisation with more
// than maxPages*100 teams or members is refused rather than read partially.
const maxPages = 100

// GitHubConfig configures GitHub sign-in for one OAuth app.
type GitHubConfig struct {
	// ClientID is the OAuth app's client ID. Required.
	ClientID string
	// ClientSecret is the OAuth app's client secret. Required. Read it from
	// a file or the environment, never from the config file; never log it.
	ClientSecret string
	// RedirectURL is the callback URL, from configuration only: GitHub
	// accepts any redirect_uri under the registered callback path, so it
	// must never be derived from a request. Required.
	RedirectURL string
	// Org is the GitHub organisation whose teams count (the policy's
	// github.org). Required; compared case-insensitively.
	Org string
	// WebURL is where /login/oauth/authorize and /login/oauth/access_token
	// live. Empty means GitHubWebURL.
	WebURL string
	// APIURL is the REST API base. Empty means GitHubAPIURL.
	APIURL string
	// HTTPClient makes every request to GitHub. Nil means a client with a
	// 15-second timeout.
	HTTPClient *http.Client
}

// GitHub signs people in with GitHub's OAuth web flow and reads who they are
// and which teams of the organisation they belong to. It is safe for
// concurrent use.
type GitHub struct {
	org    string
	oauth  oauth2.Config
	apiURL *url.URL
	client *http.Client
}

// GitHubUser is a GitHub user as established at sign-in.
type GitHubUser struct {
	// Login is the user's current login. Logins can be renamed and
	// re-registered: bind records to ID.
	Login string
	// ID is GitHub's immutable numeric user ID.
	ID int64
	// Name is the display name; may be empty. For display only.
	Name string
	// Teams are the slugs of the user's teams in the organisation, sorted,
	// including the parents of nested teams (whose members GitHub counts as
	// members of the parent).
	Teams []string
}

// Identity returns the policy identity of u.
func (u *GitHubUser) Identity() policy.Identity {
	return policy.Identity{Login: u.Login, ID: u.ID, Teams: append([]string(nil), u.Teams...)}
}

// NewGitHub checks cfg and returns a GitHub sign-in.
func NewGitHub(cfg GitHubConfig) (*GitHub, error) {
	var errs []error
	if cfg.ClientID == "" {
		errs = append(errs, errors.New("client ID is empty"))
	}
	if cfg.ClientSecret == "" {
		errs = append(errs, errors.New("client secret is empty"))
	}
	if cfg.Org == "" {
		errs = append(errs, errors.New("organisation is empty"))
	}
	if err := checkAbsURL(cfg.RedirectURL); err != nil {
		errs = append(errs, fmt.Errorf("redirect URL: %w", err))
	}
	web, err := baseURL(cfg.WebURL, GitHubWebURL)
	if err != nil {
		errs = append(errs, fmt.Errorf("web URL: %w", err))
	}
	api, err := baseURL(cfg.APIURL, GitHubAPIURL)
	if err != nil {
		errs = append(errs, fmt.Errorf("API URL: %w", err))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("identity: github: %w", errors.Join(errs...))
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	return &GitHub{
		org: cfg.Org,
		oauth: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			RedirectURL:  cfg.RedirectURL,
			Scopes:       []string{"read:org"},
			Endpoint: oauth2.Endpoint{
				AuthURL:   web.JoinPath("login/oauth/authorize").String(),
				TokenURL:  web.JoinPath("login/oauth/access_token").String(),
				AuthStyle: oauth2.AuthStyleInParams,
			},
		},
		apiURL: api,
		client: client,
	}, nil
}

// Org returns the configured organisation.
func (g *GitHub) Org() string { return g.org }

// AuthCodeURL returns the GitHub authorization URL for req: its state, the
// S256 challenge of its verifier, and scope read:org. A non-empty loginHint
// suggests the account: it is sent as GitHub's "login" parameter and as
// "login_hint", which the stand-in of `sallyport dev` uses to pick a demo
// user without a click.
func (g *GitHub) AuthCodeURL(req AuthRequest, loginHint string) string {
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(req.Verifier)}
	if loginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login", loginHint), oauth2.SetAuthURLParam("login_hint", loginHint))
	}
	return g.oauth.AuthCodeURL(req.State, opts...)
}

// Exchange redeems the authorization code received at the callback with
// req's PKCE verifier, then reads the user and their teams with the
// resulting token, which is then dropped. The caller must have checked the
// callback's state with req.CheckState first.
//
// Errors match ErrRefused (bad or reused code, wrong verifier, token not
// accepted), ErrNotMember (see NotMemberError) or ErrUpstream (GitHub
// failed, timed out or answered malformed JSON).
func (g *GitHub) Exchange(ctx context.Context, code string, req AuthRequest) (*GitHubUser, error) {
	if err := req.valid(); err != nil {
		return nil, err
	}
	if code == "" {
		return nil, fmt.Errorf("identity: github: %w: no authorization code", ErrRefused)
	}
	tok, err := g.oauth.Exchange(context.WithValue(ctx, oauth2.HTTPClient, g.client), code, oauth2.VerifierOption(req.Verifier))
	if err != nil {
		return nil, fmt.Errorf("identity: github: exchanging code: %w", tokenError(err))
	}
	return g.FetchUser(ctx, tok.AccessToken)
}

// FetchUser reads the user the access token belongs to and their teams in
// the organisation. Exchange calls it; it is exported for callers holding a
// token obtained otherwise (tests, a device flow). The token is not kept.
func (g *GitHub) FetchUser(ctx context.Context, accessToken string) (*GitHubUser, error) {
	c := newAPIClient(g.client, g.apiURL, accessToken)
	u, _, err := c.Users.Get(ctx, "")
	if err != nil {
		return nil, apiError("reading the user", err)
	}
	if u.GetLogin() == "" || u.GetID() <= 0 {
		return nil, fmt.Errorf("identity: github: reading the user: %w: user without login or ID", ErrUpstream)
	}
	user := &GitHubUser{Login: u.GetLogin(), ID: u.GetID(), Name: u.GetName()}

	m, _, err := c.Organizations.GetOrgMembership(ctx, "", g.org)
	if err != nil {
		if isStatus(err, http.StatusNotFound) {
			return nil, &NotMemberError{Login: user.Login, Org: g.org}
		}
		if isStatus(err, http.StatusForbidden) {
			return nil, fmt.Errorf("identity: github: reading membership of %s: %w: access denied (the organisation may restrict OAuth app access; an owner must approve the app)", g.org, ErrRefused)
		}
		return nil, apiError("reading organisation membership", err)
	}
	if m.GetState() != "active" || !strings.EqualFold(m.GetOrganization().GetLogin(), g.org) ||
		(m.GetUser() != nil && m.GetUser().GetID() != user.ID) {
		return nil, &NotMemberError{Login: user.Login, Org: g.org, Pending: m.GetState() == "pending"}
	}

	teams, err := g.userTeams(ctx, c)
	if err != nil {
		return nil, err
	}
	user.Teams = teams
	return user, nil
}

// userTeams lists the user's teams in the organisation, every page or
// nothing, and adds the ancestors of nested teams.
func (g *GitHub) userTeams(ctx context.Context, c *github.Client) ([]string, error) {
	set := map[string]bool{}
	parents := map[string]string{} // slug -> parent slug, "" when known to have none
	opt := &github.ListOptions{PerPage: 100}
	for page := 0; ; page++ {
		if page == maxPages {
			return nil, fmt.Errorf("identity: github: listing teams: %w: more than %d pages", ErrUpstream, maxPages)
		}
		ts, resp, err := c.Teams.ListUserTeams(ctx, opt)
		if err != nil {
			return nil, apiError("listing teams", err)
		}
		for _, t := range ts {
			if !strings.EqualFold(t.GetOrganization().GetLogin(), g.org) || t.GetSlug() == "" {
				continue
			}
			set[t.GetSlug()] = true
			parents[t.GetSlug()] = t.GetParent().GetSlug()
		}
		if resp.NextPage == 0 {
			break
		}
		opt.Page = resp.NextPage
	}
	// GitHub counts members of a child team as members of its parent. The
	// listing names each team's direct parent only; read further ancestors.
	for slug := range set {
		for depth, p := 0, parents[slug]; p != ""; depth++ {
			if depth == 10 {
				return nil, fmt.Errorf("identity: github: team %s: %w: team nesting deeper than 10", slug, ErrUpstream)
			}
			set[p] = true
			next, known := parents[p]
			if !known {
				t, _, err := c.Teams.GetTeamBySlug(ctx, g.org, p)
				if err != nil {
					return nil, apiError("reading parent team "+p, err)
				}
				next = t.GetParent().GetSlug()
				parents[p] = next
			}
			p = next
		}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}

// newAPIClient returns a go-github client for base authenticating with
// token (none when empty).
//
// It never uses go-github's WithAuthToken: in v57 that installs the token
// in the *http.Client it was given, so clients sharing one *http.Client
// would all send the first token set — every user would be read as the
// first one. Each call gets its own *http.Client instead, and redirects
// away from the API host are refused so the token cannot follow them.
func newAPIClient(hc *http.Client, base *url.URL, token string) *github.Client {
	c := *hc
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	if token != "" {
		c.Transport = bearerTransport{token: token, next: next}
	}
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != base.Scheme || req.URL.Host != base.Host {
			return fmt.Errorf("refusing redirect away from %s", base.Host)
		}
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		return nil
	}
	gc := github.NewClient(&c)
	b := *base
	gc.BaseURL = &b
	return gc
}

type bearerTransport struct {
	token string
	next  http.RoundTripper
}

func (t bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+t.token)
	return t.next.RoundTrip(req)
}

// apiError classifies a go-github error: 4xx answers other than 429 mean
// GitHub refused; everything else (5xx, rate limits, network, timeouts,
// malformed JSON) means it did not answer properly.
func apiError(what string, err error) error {
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		st := er.Response.StatusCode
		if st >= 400 && st < 500 && st != http.StatusTooManyRequests {
			return fmt.Errorf("identity: github: %s: %w: %s", what, ErrRefused, http.StatusText(st))
		}
		return fmt.Errorf("identity: github: %s: %w: status %d", what, ErrUpstream, st)
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	if errors.As(err, &se) || errors.As(err, &te) {
		return fmt.Errorf("identity: github: %s: %w: malformed JSON: %v", what, ErrUpstream, err)
	}
	return fmt.Errorf("identity: github: %s: %w: %w", what, ErrUpstream, err)
}

func isStatus(err error, status int) bool {
	var er *github.ErrorResponse
	return errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == status
}

// tokenError classifies an error of oauth2's token exchange without
// repeating the response body.
func tokenError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.Response != nil && re.Response.StatusCode >= 500 {
			return fmt.Errorf("%w: token endpoint status %d", ErrUpstream, re.Response.StatusCode)
		}
		msg := re.ErrorCode
		if re.ErrorDescription != "" {
			msg += ": " + re.ErrorDescription
		}
		if msg == "" && re.Response != nil {
			msg = fmt.Sprintf("status %d", re.Response.StatusCode)
		}
		return fmt.Errorf("%w: %s", ErrRefused, msg)
	}
	return fmt.Errorf("%w: %w", ErrUpstream, err)
}

func checkAbsURL(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	if u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%q must not carry user info or a fragment", s)
	}
	return nil
}

// baseURL parses s (or def when s is empty) and makes its path end in '/'.
func baseURL(s, def string) (*url.URL, error) {
	if s == "" {
		s = def
	}
	if err := checkAbsURL(s); err != nil {
		return nil, err
	}
	u, _ := url.Parse(s)
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	u.RawQuery = ""
	return u, nil
}
