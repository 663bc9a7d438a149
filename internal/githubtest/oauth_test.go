package githubtest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-github/v57/github"
)

const callback = "https://app.example.org/auth/callback"

func oauthServer(t *testing.T) (*Server, User) {
	t.Helper()
	s := New(t)
	if err := s.RegisterOAuthApp(OAuthApp{ClientID: "cid", ClientSecret: "csecret", CallbackURL: callback}); err != nil {
		t.Fatal(err)
	}
	u, err := s.AddUserWithID("alice", 1001)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetMembership(u, "example-oss", StateActive, "infra"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddUserWithID("<b>mallory</b>", 1002); err != nil {
		t.Fatal(err)
	}
	return s, u
}

func noRedirect(s *Server) *http.Client {
	c := s.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

func challenge(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizeURL builds an authorization URL with the given parameters on
// top of a valid default set.
func authorizeURL(s *Server, set map[string]string) string {
	q := url.Values{"client_id": {"cid"}, "scope": {"read:org"}, "state": {"st"},
		"code_challenge": {challenge("verifier-verifier-verifier-verifier-verifier")}, "code_challenge_method": {"S256"},
		"redirect_uri": {callback}, "login_hint": {"alice"}}
	for k, v := range set {
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
	}
	return s.URL + "login/oauth/authorize?" + q.Encode()
}

func TestAuthorize(t *testing.T) {
	tests := []struct {
		name      string
		set       map[string]string
		wantTo    string // prefix of the Location
		wantError string // error parameter, "" for a code
		wantPage  bool
	}{
		{name: "ok/login-hint", wantTo: callback + "?"},
		{name: "ok/redirect-below-callback", set: map[string]string{"redirect_uri": callback + "/cli?x=1"}, wantTo: callback + "/cli?"},
		{name: "ok/no-redirect-uri-uses-callback", set: map[string]string{"redirect_uri": ""}, wantTo: callback + "?"},
		{name: "ok/no-hint-shows-page", set: map[string]string{"login_hint": ""}, wantPage: true},
		{name: "ok/unknown-hint-shows-page", set: map[string]string{"login_hint": "nobody"}, wantPage: true},
		{name: "fail/redirect-other-host", set: map[string]string{"redirect_uri": "https://evil.example/auth/callback"}, wantTo: callback + "?", wantError: "redirect_uri_mismatch"},
		{name: "fail/redirect-other-port", set: map[string]string{"redirect_uri": "https://app.example.org:8443/auth/callback"}, wantTo: callback + "?", wantError: "redirect_uri_mismatch"},
		{name: "fail/redirect-sibling-path", set: map[string]string{"redirect_uri": "https://app.example.org/auth/callbackx"}, wantTo: callback + "?", wantError: "redirect_uri_mismatch"},
		{name: "fail/redirect-dotdot", set: map[string]string{"redirect_uri": "https://app.example.org/auth/callback/../../admin"}, wantTo: callback + "?", wantError: "redirect_uri_mismatch"},
		{name: "fail/redirect-http-downgrade", set: map[string]string{"redirect_uri": "http://app.example.org/auth/callback"}, wantTo: callback + "?", wantError: "redirect_uri_mismatch"},
		{name: "fail/plain-pkce", set: map[string]string{"code_challenge_method": "plain"}, wantTo: callback + "?", wantError: "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := oauthServer(t)
			resp, err := noRedirect(s).Get(authorizeURL(s, tc.set))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tc.wantPage {
				if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `value="alice"`) {
					t.Fatalf("got %d %s; want the sign-in page listing alice", resp.StatusCode, body)
				}
				if strings.Contains(string(body), "<b>mallory") || !strings.Contains(string(body), "&lt;b&gt;mallory") {
					t.Error("sign-in page does not escape logins")
				}
				return
			}
			loc := resp.Header.Get("Location")
			if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, tc.wantTo) {
				t.Fatalf("got %d to %q; want 302 to %s", resp.StatusCode, loc, tc.wantTo)
			}
			u, _ := url.Parse(loc)
			if u.Query().Get("state") != "st" {
				t.Errorf("state not returned: %s", loc)
			}
			if got := u.Query().Get("error"); got != tc.wantError {
				t.Errorf("error: got %q; want %q", got, tc.wantError)
			}
			if (tc.wantError == "") != (u.Query().Get("code") != "") {
				t.Errorf("code: %s", loc)
			}
		})
	}
}

func TestSignInPageChoice(t *testing.T) {
	s, _ := oauthServer(t)
	page, _ := url.Parse(authorizeURL(s, map[string]string{"login_hint": ""}))
	form := page.Query()
	form.Set("user", "alice")
	resp, err := noRedirect(s).PostForm(s.URL+"login/oauth/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.Contains(loc, "code=") {
		t.Errorf("pick: got %d %q; want a code", resp.StatusCode, loc)
	}
	form.Del("user")
	form.Set("cancel", "1")
	resp, err = noRedirect(s).PostForm(s.URL+"login/oauth/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "error=access_denied") {
		t.Errorf("cancel: got %q; want access_denied", loc)
	}
}

func TestRedirectAllowed(t *testing.T) {
	tests := []struct {
		registered, given string
		ok                bool
	}{
		{"https://a.example/cb", "https://a.example/cb", true},
		{"https://a.example/cb", "https://a.example/cb/sub", true},
		{"https://a.example/cb/", "https://a.example/cb/sub", true},
		{"http://127.0.0.1/cb", "http://127.0.0.1:53124/cb", true}, // loopback: any port
		{"http://127.0.0.1:8080/cb", "http://127.0.0.1:9999/cb", true},
		{"https://a.example/cb", "https://a.example/cbx", false},
		{"https://a.example/cb", "https://a.example/", false},
		{"https://a.example/cb", "https://b.example/cb", false},
		{"https://a.example/cb", "https://a.example:444/cb", false},
		{"https://a.example/cb", "http://a.example/cb", false},
		{"https://a.example/cb", "https://a.example/cb/../x", false},
		{"https://a.example/cb", "https://a.example/cb/%2e%2e/x", false},
		{"https://a.example/cb", "https://user@a.example/cb", false},
		{"http://localhost/cb", "http://localhost:1234/cb", false}, // only loopback IPs get any port
	}
	for _, tc := range tests {
		r, _ := url.Parse(tc.registered)
		g, _ := url.Parse(tc.given)
		if got := redirectAllowed(r, g); got != tc.ok {
			t.Errorf("%s under %s: got %v; want %v", tc.given, tc.registered, got, tc.ok)
		}
	}
}

// code returns a fresh authorization code for alice.
func code(t *testing.T, s *Server) string {
	t.Helper()
	resp, err := noRedirect(s).Get(authorizeURL(s, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	u, _ := url.Parse(resp.Header.Get("Location"))
	return u.Query().Get("code")
}

func exchange(t *testing.T, s *Server, form url.Values, accept string) map[string]string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+"login/oauth/access_token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token endpoint: status %d; GitHub answers 200 even for errors", resp.StatusCode)
	}
	body, _ := io.ReadAll(resp.Body)
	out := map[string]string{}
	if accept == "application/json" {
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("not JSON: %s", body)
		}
		return out
	}
	v, err := url.ParseQuery(string(body))
	if err != nil {
		t.Fatalf("not form-encoded: %s", body)
	}
	for k := range v {
		out[k] = v.Get(k)
	}
	return out
}

func TestAccessToken(t *testing.T) {
	const verifier = "verifier-verifier-verifier-verifier-verifier"
	good := func(c string) url.Values {
		return url.Values{"client_id": {"cid"}, "client_secret": {"csecret"}, "code": {c}, "redirect_uri": {callback}, "code_verifier": {verifier}}
	}
	tests := []struct {
		name    string
		form    func(t *testing.T, s *Server) url.Values
		accept  string
		wantErr string
	}{
		{"ok/form-encoded", func(t *testing.T, s *Server) url.Values { return good(code(t, s)) }, "", ""},
		{"ok/json", func(t *testing.T, s *Server) url.Values { return good(code(t, s)) }, "application/json", ""},
		{"fail/reused-code", func(t *testing.T, s *Server) url.Values {
			f := good(code(t, s))
			if r := exchange(t, s, f, "application/json"); r["access_token"] == "" {
				t.Fatalf("first use: %v", r)
			}
			return f
		}, "application/json", "bad_verification_code"},
		{"fail/wrong-verifier", func(t *testing.T, s *Server) url.Values {
			f := good(code(t, s))
			f.Set("code_verifier", "other-other-other-other-other-other-other-other")
			return f
		}, "application/json", "bad_verification_code"},
		{"fail/no-verifier", func(t *testing.T, s *Server) url.Values {
			f := good(code(t, s))
			f.Del("code_verifier")
			return f
		}, "", "bad_verification_code"},
		{"fail/wrong-secret", func(t *testing.T, s *Server) url.Values {
			f := good(code(t, s))
			f.Set("client_secret", "nope")
			return f
		}, "application/json", "incorrect_client_credentials"},
		{"fail/other-redirect-uri", func(t *testing.T, s *Server) url.Values {
			f := good(code(t, s))
			f.Set("redirect_uri", callback+"/other")
			return f
		}, "application/json", "redirect_uri_mismatch"},
		{"fail/unknown-code", func(t *testing.T, s *Server) url.Values { return good("made-up") }, "application/json", "bad_verification_code"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, alice := oauthServer(t)
			r := exchange(t, s, tc.form(t, s), tc.accept)
			if tc.wantErr != "" {
				if r["error"] != tc.wantErr || r["access_token"] != "" {
					t.Fatalf("got %v; want error %s", r, tc.wantErr)
				}
				return
			}
			if r["error"] != "" || !strings.HasPrefix(r["access_token"], "gho_") || r["token_type"] != "bearer" || r["scope"] != "read:org" {
				t.Fatalf("got %v", r)
			}
			u, _, err := client(t, s, r["access_token"]).Users.Get(context.Background(), "")
			if err != nil || u.GetID() != alice.ID {
				t.Errorf("token acts as %v, %v; want alice", u, err)
			}
		})
	}
}

func TestCodeExpires(t *testing.T) {
	s, _ := oauthServer(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.SetClock(func() time.Time { return now })
	c := code(t, s)
	now = now.Add(11 * time.Minute)
	r := exchange(t, s, url.Values{"client_id": {"cid"}, "client_secret": {"csecret"}, "code": {c},
		"code_verifier": {"verifier-verifier-verifier-verifier-verifier"}}, "application/json")
	if r["error"] != "bad_verification_code" {
		t.Errorf("got %v; want bad_verification_code", r)
	}
}

func TestOrgEndpoints(t *testing.T) {
	ctx := context.Background()
	s := New(t)
	s.SetPageSize(2)
	alice, _ := s.AddUserWithID("alice", 1001)
	bob, _ := s.AddUserWithID("bob", 1002)
	dave, _ := s.AddUserWithID("dave", 1005)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.AddTeam("example-oss", "infra-oncall", "infra"))
	must(s.SetMembership(alice, "example-oss", StateActive, "infra", "website", "docs"))
	must(s.SetMembership(alice, "other-org", StateActive, "infra"))
	must(s.SetMembership(bob, "example-oss", StateActive, "infra-oncall"))
	must(s.SetMembership(dave, "example-oss", StatePending, "infra"))
	c := client(t, s, s.TokenWithScopes(alice, "read:org"))

	// /user/teams: every organisation, paginated, each with organization.login.
	var all []string
	opt := &github.ListOptions{PerPage: 100}
	pages := 0
	for {
		ts, resp, err := c.Teams.ListUserTeams(ctx, opt)
		must(err)
		pages++
		for _, tm := range ts {
			all = append(all, tm.GetOrganization().GetLogin()+"/"+tm.GetSlug())
		}
		if resp.NextPage == 0 {
			break
		}
		opt.Page = resp.NextPage
	}
	if want := []string{"example-oss/docs", "example-oss/infra", "example-oss/website", "other-org/infra"}; !slices.Equal(all, want) || pages != 2 {
		t.Errorf("user teams: got %q in %d pages; want %q in 2", all, pages, want)
	}

	m, _, err := client(t, s, s.Token(dave)).Organizations.GetOrgMembership(ctx, "", "example-oss")
	if err != nil || m.GetState() != "pending" || m.GetOrganization().GetLogin() != "example-oss" || m.GetUser().GetID() != dave.ID {
		t.Errorf("pending membership: got %+v, %v", m, err)
	}
	_, _, err = c.Organizations.GetOrgMembership(ctx, "", "third-org")
	if !isStatus(err, http.StatusNotFound) {
		t.Errorf("no membership: got %v; want 404", err)
	}

	members, _, err := c.Teams.ListTeamMembersBySlug(ctx, "example-oss", "infra", nil)
	must(err)
	var logins []string
	for _, u := range members {
		logins = append(logins, u.GetLogin())
	}
	if !slices.Equal(logins, []string{"alice", "bob"}) { // bob via the child team; dave pending
		t.Errorf("infra members: got %q; want [alice bob]", logins)
	}
	if ok, _, err := c.Organizations.IsMember(ctx, "example-oss", "dave"); ok || err != nil {
		t.Errorf("pending is member: got %v, %v; want false", ok, err)
	}
	if ok, _, err := c.Organizations.IsMember(ctx, "example-oss", "bob"); !ok || err != nil {
		t.Errorf("bob is member: got %v, %v; want true", ok, err)
	}
	tm, _, err := c.Teams.GetTeamBySlug(ctx, "example-oss", "infra-oncall")
	if err != nil || tm.GetParent().GetSlug() != "infra" {
		t.Errorf("nested team: got %+v, %v", tm, err)
	}

	_, _, err = client(t, s, s.TokenWithScopes(alice, "repo")).Teams.ListUserTeams(ctx, nil)
	if !isStatus(err, http.StatusForbidden) {
		t.Errorf("without read:org: got %v; want 403", err)
	}
	_, _, err = client(t, s, s.Token(dave)).Teams.ListTeams(ctx, "example-oss", nil)
	if !isStatus(err, http.StatusForbidden) {
		t.Errorf("pending member listing teams: got %v; want 403", err)
	}
}

func isStatus(err error, code int) bool {
	var er *github.ErrorResponse
	return errors.As(err, &er) && er.Response.StatusCode == code
}

func TestFaults(t *testing.T) {
	ctx := context.Background()
	s := New(t)
	alice, _ := s.AddUserWithID("alice", 1001)
	if err := s.SetMembership(alice, "o", StateActive, "a", "b", "c"); err != nil {
		t.Fatal(err)
	}
	s.SetPageSize(1)
	c := client(t, s, s.Token(alice))
	s.InjectFault(Fault{Path: "/user/teams", Page: 2, Status: 500, Times: 1})
	if _, _, err := c.Teams.ListUserTeams(ctx, &github.ListOptions{Page: 1}); err != nil {
		t.Errorf("page 1: %v", err)
	}
	if _, _, err := c.Teams.ListUserTeams(ctx, &github.ListOptions{Page: 2}); !isStatus(err, 500) {
		t.Errorf("page 2: got %v; want 500", err)
	}
	if _, _, err := c.Teams.ListUserTeams(ctx, &github.ListOptions{Page: 2}); err != nil {
		t.Errorf("page 2 after the fault was used up: %v", err)
	}
	s.InjectFault(Fault{Path: "/user", Body: `{"login": `})
	if _, _, err := c.Users.Get(ctx, ""); err == nil {
		t.Error("malformed JSON: got nil error")
	}
	s.ClearFaults()
	s.InjectFault(Fault{Delay: time.Minute})
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, _, err := c.Users.Get(tctx, ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow: got %v; want deadline exceeded", err)
	}
}

func TestStartLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "example.org:80", "localhost:0"} {
		if s, err := Start(addr); err == nil {
			s.Close()
			t.Errorf("Start(%q): got nil error; want refusal", addr)
		}
	}
	s, err := Start("")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") || !strings.HasSuffix(s.URL, "/") {
		t.Errorf("URL: got %s", s.URL)
	}
	users, err := s.AddDemoUsers("example-oss")
	if err != nil || len(users) != 6 {
		t.Fatalf("demo users: %v, %v", users, err)
	}
	if err := s.RegisterOAuthApp(OAuthApp{ClientID: "cid", ClientSecret: "csecret", CallbackURL: "http://127.0.0.1/cb"}); err != nil {
		t.Fatal(err)
	}
	resp, err := noRedirect(s).Get(s.URL + "login/oauth/authorize?client_id=cid&redirect_uri=" + url.QueryEscape("http://127.0.0.1:4321/cb") + "&login_hint=bob&state=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "http://127.0.0.1:4321/cb?code=") {
		t.Errorf("dev sign-in: got %d %q", resp.StatusCode, loc)
	}
}
