package identity

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/internal/githubtest"
)

const (
	testOrg      = "example-oss"
	testClientID = "Iv1.test"
	testSecret   = "test-client-secret"
	testCallback = "https://sallyport.example.org/auth/github/callback"
)

// standIn starts the GitHub stand-in with the demo users and an OAuth app.
func standIn(t *testing.T) (*githubtest.Server, map[string]githubtest.User) {
	t.Helper()
	gh := githubtest.New(t)
	users, err := gh.AddDemoUsers(testOrg)
	if err != nil {
		t.Fatal(err)
	}
	if err := gh.RegisterOAuthApp(githubtest.OAuthApp{ClientID: testClientID, ClientSecret: testSecret, CallbackURL: testCallback}); err != nil {
		t.Fatal(err)
	}
	byLogin := map[string]githubtest.User{}
	for _, u := range users {
		byLogin[u.Login] = u
	}
	return gh, byLogin
}

func newTestGitHub(t *testing.T, gh *githubtest.Server) *GitHub {
	t.Helper()
	g, err := NewGitHub(GitHubConfig{
		ClientID: testClientID, ClientSecret: testSecret, RedirectURL: testCallback,
		Org: "Example-OSS", WebURL: gh.URL, APIURL: gh.URL, HTTPClient: gh.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// authorize follows the authorization URL as a browser would until the
// stand-in redirects to the callback, and returns the callback's query.
func authorize(t *testing.T, gh *githubtest.Server, authURL string) url.Values {
	t.Helper()
	c := gh.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: got status %d; want 302", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(loc.String(), testCallback+"?") {
		t.Fatalf("authorize redirected to %s; want the callback", loc)
	}
	return loc.Query()
}

// signIn runs the whole web flow for login and returns the result.
func signIn(t *testing.T, ctx context.Context, gh *githubtest.Server, g *GitHub, login string) (*GitHubUser, error) {
	t.Helper()
	req := NewAuthRequest()
	q := authorize(t, gh, g.AuthCodeURL(req, login))
	if err := req.CheckState(q.Get("state")); err != nil {
		t.Fatalf("state: %v", err)
	}
	return g.Exchange(ctx, q.Get("code"), req)
}

func TestGitHubAuthCodeURL(t *testing.T) {
	gh, _ := standIn(t)
	g := newTestGitHub(t, gh)
	req := NewAuthRequest()
	u, err := url.Parse(g.AuthCodeURL(req, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	want := map[string]string{
		"client_id": testClientID, "redirect_uri": testCallback, "scope": "read:org", "state": req.State,
		"code_challenge_method": "S256", "login": "alice", "login_hint": "alice", "response_type": "code",
	}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s: got %q; want %q", k, q.Get(k), v)
		}
	}
	if q.Get("code_challenge") == "" || strings.Contains(u.String(), req.Verifier) {
		t.Errorf("URL must carry the S256 challenge, never the verifier: %s", u)
	}
	if u.Path != "/login/oauth/authorize" {
		t.Errorf("path: got %s; want /login/oauth/authorize", u.Path)
	}
}

func TestGitHubSignIn(t *testing.T) {
	tests := []struct {
		name      string
		login     string
		setup     func(t *testing.T, gh *githubtest.Server, u map[string]githubtest.User)
		wantTeams []string
		wantErr   error
		pending   bool
	}{
		{name: "ok/member-with-teams", login: "alice", wantTeams: []string{"infra", "website"}},
		{name: "ok/member-without-team", login: "octo-admin", wantTeams: []string{}},
		{
			name: "ok/teams-of-other-orgs-ignored", login: "bob",
			setup: func(t *testing.T, gh *githubtest.Server, u map[string]githubtest.User) {
				must(t, gh.SetMembership(u["bob"], "other-org", githubtest.StateActive, "infra", "admins"))
				must(t, gh.SetMembership(u["bob"], "example-oss-evil", githubtest.StateActive, "infra"))
			},
			wantTeams: []string{"website"},
		},
		{
			name: "ok/all-pages-read", login: "alice",
			setup: func(t *testing.T, gh *githubtest.Server, u map[string]githubtest.User) {
				gh.SetPageSize(2)
				must(t, gh.SetMembership(u["alice"], "other-org", githubtest.StateActive, "a", "b", "c"))
				for _, s := range []string{"t1", "t2", "t3", "t4", "t5"} {
					must(t, gh.AddToTeam(u["alice"], testOrg, s))
				}
			},
			wantTeams: []string{"infra", "t1", "t2", "t3", "t4", "t5", "website"},
		},
		{
			name: "ok/nested-team-counts-for-parents", login: "bob",
			setup: func(t *testing.T, gh *githubtest.Server, u map[string]githubtest.User) {
				must(t, gh.AddTeam(testOrg, "ops", ""))
				must(t, gh.AddTeam(testOrg, "infra", "ops"))
				must(t, gh.AddTeam(testOrg, "infra-oncall", "infra"))
				must(t, gh.AddToTeam(u["bob"], testOrg, "infra-oncall"))
			},
			wantTeams: []string{"infra", "infra-oncall", "ops", "website"},
		},
		{
			name: "ok/team-removed-then-less", login: "alice",
			setup: func(t *testing.T, gh *githubtest.Server, u map[string]githubtest.User) {
				gh.RemoveFromTeam(u["alice"], testOrg, "infra")
			},
			wantTeams: []string{"website"},
		},
		{name: "fail/member-of-other-org-only", login: "erin", wantErr: ErrNotMember},
		{name: "fail/pending-invitation-is-not-membership", login: "dave", wantErr: ErrNotMember, pending: true},
		{
			name: "fail/removed-from-org", login: "bob",
			setup: func(t *testing.T, gh *githubtest.Server, u map[string]githubtest.User) {
				gh.RemoveFromOrg(u["bob"], testOrg)
			},
			wantErr: ErrNotMember,
		},
		{
			name: "fail/second-team-page-500", login: "alice",
			setup: func(t *testing.T, gh *githubtest.Server, u map[string]githubtest.User) {
				gh.SetPageSize(1)
				gh.InjectFault(githubtest.Fault{Path: "/user/teams", Page: 2, Status: 500})
			},
			wantErr: ErrUpstream,
		},
		{
			name: "fail/last-team-page-502", login: "alice",
			setup: func(t *testing.T, gh *githubtest.Server, u map[string]githubtest.User) {
				gh.SetPageSize(1)
				gh.InjectFault(githubtest.Fault{Path: "/user/teams", Page: 3, Status: 502})
				must(t, gh.AddToTeam(u["alice"], testOrg, "zeta"))
			},
			wantErr: ErrUpstream,
		},
		{
			name: "fail/team-page-malformed-json", login: "alice",
			setup: func(t *testing.T, gh *githubtest.Server, u map[string]githubtest.User) {
				gh.SetPageSize(1)
				gh.InjectFault(githubtest.Fault{Path: "/user/teams", Page: 2, Body: `[{"slug": "infra", "organization": {"login": `})
			},
			wantErr: ErrUpstream,
		},
		{
			name: "fail/team-page-wrong-json-type", login: "alice",
			setup: func(t *testing.T, gh *githubtest.Server, u map[string]githubtest.User) {
				gh.InjectFault(githubtest.Fault{Path: "/user/teams", Body: `{"slug": "infra"}`})
			},
			wantErr: ErrUpstream,
		},
		{
			name: "fail/user-500", login: "alice",
			setup: func(t *testing.T, gh *githubtest.Server, u map[string]githubtest.User) {
				gh.InjectFault(githubtest.Fault{Path: "/user", Status: 500})
			},
			wantErr: ErrUpstream,
		},
		{
			name: "fail/membership-503", login: "alice",
			setup: func(t *testing.T, gh *githubtest.Server, u map[string]githubtest.User) {
				gh.InjectFault(githubtest.Fault{Path: "/user/memberships/orgs/Example-OSS", Status: 503})
			},
			wantErr: ErrUpstream,
		},
		{
			name: "fail/token-endpoint-500", login: "alice",
			setup: func(t *testing.T, gh *githubtest.Server, u map[string]githubtest.User) {
				gh.InjectFault(githubtest.Fault{Path: "/login/oauth/access_token", Status: 500})
			},
			wantErr: ErrUpstream,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gh, users := standIn(t)
			if tc.setup != nil {
				tc.setup(t, gh, users)
			}
			g := newTestGitHub(t, gh)
			u, err := signIn(t, t.Context(), gh, g, tc.login)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || u != nil {
					t.Fatalf("got %v, %v; want error %v and no user", u, err, tc.wantErr)
				}
				var nm *NotMemberError
				if errors.As(err, &nm) && nm.Pending != tc.pending {
					t.Errorf("pending: got %v; want %v", nm.Pending, tc.pending)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := users[tc.login]
			if u.Login != want.Login || u.ID != want.ID {
				t.Errorf("got %s/%d; want %s/%d", u.Login, u.ID, want.Login, want.ID)
			}
			if u.Teams == nil {
				u.Teams = []string{}
			}
			if !slices.Equal(u.Teams, tc.wantTeams) {
				t.Errorf("teams: got %q; want %q", u.Teams, tc.wantTeams)
			}
			id := u.Identity()
			if id.Login != u.Login || id.ID != u.ID || !slices.Equal(id.Teams, u.Teams) || id.CI != nil {
				t.Errorf("identity: got %+v", id)
			}
		})
	}
}

func TestGitHubSlowFailsWithTimeout(t *testing.T) {
	gh, _ := standIn(t)
	gh.InjectFault(githubtest.Fault{Path: "/user/teams", Delay: 10 * time.Second})
	g := newTestGitHub(t, gh)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	u, err := signIn(t, ctx, gh, g, "alice")
	if !errors.Is(err, ErrUpstream) || !errors.Is(err, context.DeadlineExceeded) || u != nil {
		t.Fatalf("got %v, %v; want ErrUpstream wrapping context.DeadlineExceeded", u, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v; want the context deadline to end it", d)
	}
}

func TestGitHubRenamedLoginKeepsID(t *testing.T) {
	gh, users := standIn(t)
	g := newTestGitHub(t, gh)
	before, err := signIn(t, t.Context(), gh, g, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gh.RenameUser(users["alice"], "alice-renamed"); err != nil {
		t.Fatal(err)
	}
	// Someone else registers the old login.
	imposter, err := gh.AddUserWithID("alice", 999999)
	if err != nil {
		t.Fatal(err)
	}
	must(t, gh.SetMembership(imposter, testOrg, githubtest.StateActive, "website"))
	after, err := signIn(t, t.Context(), gh, g, "alice-renamed")
	if err != nil {
		t.Fatal(err)
	}
	if after.ID != before.ID || after.Login != "alice-renamed" || !slices.Equal(after.Teams, before.Teams) {
		t.Errorf("renamed: got %+v; want ID %d, login alice-renamed, teams %q", after, before.ID, before.Teams)
	}
	other, err := signIn(t, t.Context(), gh, g, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == before.ID {
		t.Errorf("new holder of the old login got ID %d of the renamed user", other.ID)
	}
}

func TestGitHubExchangeRefused(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, gh *githubtest.Server, g *GitHub) error
	}{
		{"fail/code-reused", func(t *testing.T, gh *githubtest.Server, g *GitHub) error {
			req := NewAuthRequest()
			q := authorize(t, gh, g.AuthCodeURL(req, "alice"))
			if _, err := g.Exchange(t.Context(), q.Get("code"), req); err != nil {
				t.Fatalf("first exchange: %v", err)
			}
			_, err := g.Exchange(t.Context(), q.Get("code"), req)
			return err
		}},
		{"fail/wrong-pkce-verifier", func(t *testing.T, gh *githubtest.Server, g *GitHub) error {
			req := NewAuthRequest()
			q := authorize(t, gh, g.AuthCodeURL(req, "alice"))
			other := req
			other.Verifier = NewAuthRequest().Verifier
			_, err := g.Exchange(t.Context(), q.Get("code"), other)
			return err
		}},
		{"fail/missing-pkce-verifier", func(t *testing.T, gh *githubtest.Server, g *GitHub) error {
			req := NewAuthRequest()
			q := authorize(t, gh, g.AuthCodeURL(req, "alice"))
			other := req
			other.Verifier = ""
			_, err := g.Exchange(t.Context(), q.Get("code"), other)
			return err
		}},
		{"fail/forged-code", func(t *testing.T, gh *githubtest.Server, g *GitHub) error {
			_, err := g.Exchange(t.Context(), "not-a-code", NewAuthRequest())
			return err
		}},
		{"fail/empty-code", func(t *testing.T, gh *githubtest.Server, g *GitHub) error {
			_, err := g.Exchange(t.Context(), "", NewAuthRequest())
			return err
		}},
		{"fail/wrong-client-secret", func(t *testing.T, gh *githubtest.Server, g *GitHub) error {
			bad, err := NewGitHub(GitHubConfig{ClientID: testClientID, ClientSecret: "wrong", RedirectURL: testCallback,
				Org: testOrg, WebURL: gh.URL, APIURL: gh.URL, HTTPClient: gh.Client()})
			if err != nil {
				t.Fatal(err)
			}
			req := NewAuthRequest()
			q := authorize(t, gh, bad.AuthCodeURL(req, "alice"))
			_, err = bad.Exchange(t.Context(), q.Get("code"), req)
			return err
		}},
		{"fail/revoked-token", func(t *testing.T, gh *githubtest.Server, g *GitHub) error {
			_, err := g.FetchUser(t.Context(), "gho_revoked")
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gh, _ := standIn(t)
			g := newTestGitHub(t, gh)
			err := tc.run(t, gh, g)
			if !errors.Is(err, ErrRefused) && !(tc.name == "fail/missing-pkce-verifier" && err != nil) {
				t.Fatalf("got %v; want ErrRefused", err)
			}
		})
	}
}

func TestCheckState(t *testing.T) {
	req := NewAuthRequest()
	tests := []struct {
		name string
		got  string
		ok   bool
	}{
		{"ok/same", req.State, true},
		{"fail/other", NewAuthRequest().State, false},
		{"fail/empty", "", false},
		{"fail/prefix", req.State[:10], false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := req.CheckState(tc.got)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrState)) {
				t.Errorf("got %v; want ok=%v", err, tc.ok)
			}
		})
	}
	if err := (AuthRequest{}).CheckState(""); !errors.Is(err, ErrState) {
		t.Errorf("empty request: got %v; want ErrState", err)
	}
}

func TestNewGitHubConfig(t *testing.T) {
	ok := GitHubConfig{ClientID: "id", ClientSecret: "s", RedirectURL: testCallback, Org: "o"}
	tests := []struct {
		name   string
		change func(*GitHubConfig)
		ok     bool
	}{
		{"ok/defaults", func(*GitHubConfig) {}, true},
		{"ok/enterprise", func(c *GitHubConfig) {
			c.WebURL = "https://ghe.example.org"
			c.APIURL = "https://ghe.example.org/api/v3"
		}, true},
		{"fail/no-client-id", func(c *GitHubConfig) { c.ClientID = "" }, false},
		{"fail/no-secret", func(c *GitHubConfig) { c.ClientSecret = "" }, false},
		{"fail/no-org", func(c *GitHubConfig) { c.Org = "" }, false},
		{"fail/relative-redirect", func(c *GitHubConfig) { c.RedirectURL = "/callback" }, false},
		{"fail/javascript-redirect", func(c *GitHubConfig) { c.RedirectURL = "javascript:alert(1)" }, false},
		{"fail/bad-api-url", func(c *GitHubConfig) { c.APIURL = "ftp://x" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.change(&c)
			_, err := NewGitHub(c)
			if tc.ok != (err == nil) {
				t.Errorf("got %v; want ok=%v", err, tc.ok)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Regression: go-github v57's WithAuthToken installs the token in a shared
// *http.Client, so the second user signing in was read as the first.
func TestGitHubUsersDoNotShareTokens(t *testing.T) {
	gh, users := standIn(t)
	g := newTestGitHub(t, gh)
	for _, login := range []string{"alice", "bob", "carol", "alice"} {
		u, err := signIn(t, t.Context(), gh, g, login)
		if err != nil {
			t.Fatal(err)
		}
		if u.ID != users[login].ID {
			t.Fatalf("sign-in as %s: got ID %d (%s); want %d", login, u.ID, u.Login, users[login].ID)
		}
	}
}
