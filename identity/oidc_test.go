package identity

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/sallyport/sallyport/internal/oidctest"
)

const oidcCallback = "https://sallyport.example.org/auth/oidc/callback"

func newTestOIDC(t *testing.T, groupsClaim string) (*oidctest.Issuer, *OIDC) {
	t.Helper()
	iss := oidctest.New(t)
	iss.RegisterClient("sallyport", "oidc-secret", oidcCallback)
	iss.AddUser("sub-123", map[string]any{
		"email": "alice@example.org", "email_verified": true, "name": "Alice", "preferred_username": "alice",
		"groups": []string{"infra", "website"}, "team": "website",
	})
	o, err := NewOIDC(OIDCConfig{Issuer: iss.URL, ClientID: "sallyport", ClientSecret: "oidc-secret",
		RedirectURL: oidcCallback, GroupsClaim: groupsClaim, HTTPClient: iss.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return iss, o
}

// oidcSignIn runs the code flow for subject sub with req.
func oidcSignIn(t *testing.T, iss *oidctest.Issuer, o *OIDC, req AuthRequest, exchange AuthRequest) (*OIDCUser, error) {
	t.Helper()
	raw, err := o.AuthCodeURL(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(raw)
	q := u.Query()
	for k, want := range map[string]string{"nonce": req.Nonce, "state": req.State, "code_challenge_method": "S256", "response_type": "code"} {
		if q.Get(k) != want {
			t.Fatalf("auth URL %s: got %q; want %q", k, q.Get(k), want)
		}
	}
	q.Set("login_hint", "sub-123")
	u.RawQuery = q.Encode()
	c := iss.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d, location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if err := req.CheckState(loc.Query().Get("state")); err != nil {
		t.Fatal(err)
	}
	return o.Exchange(t.Context(), loc.Query().Get("code"), exchange)
}

func TestOIDCSignIn(t *testing.T) {
	tests := []struct {
		name        string
		groupsClaim string
		tamper      func(c map[string]any)
		exchange    func(r AuthRequest) AuthRequest
		wantGroups  []string
		wantErr     error
	}{
		{name: "ok/groups-list", groupsClaim: "groups", wantGroups: []string{"infra", "website"}},
		{name: "ok/groups-single-string", groupsClaim: "team", wantGroups: []string{"website"}},
		{name: "ok/groups-claim-absent", groupsClaim: "roles", wantGroups: nil},
		{name: "ok/no-groups-configured", wantGroups: nil},
		{name: "fail/nonce-mismatch", tamper: func(c map[string]any) { c["nonce"] = "someone-elses-nonce" }, wantErr: ErrNonce},
		{name: "fail/nonce-missing", tamper: func(c map[string]any) { delete(c, "nonce") }, wantErr: ErrNonce},
		{name: "fail/exchange-with-other-request", exchange: func(r AuthRequest) AuthRequest {
			o := NewAuthRequest()
			o.Verifier = r.Verifier
			return o
		}, wantErr: ErrNonce},
		{name: "fail/wrong-verifier", exchange: func(r AuthRequest) AuthRequest {
			r.Verifier = NewAuthRequest().Verifier
			return r
		}, wantErr: ErrRefused},
		{name: "ok/several-audiences-with-azp", tamper: func(c map[string]any) {
			c["aud"] = []string{"sallyport", "other"}
			c["azp"] = "sallyport"
		}},
		{name: "fail/several-audiences-without-azp", tamper: func(c map[string]any) { c["aud"] = []string{"sallyport", "other"} }, wantErr: ErrRefused},
		{name: "fail/several-audiences-other-azp", tamper: func(c map[string]any) {
			c["aud"] = []string{"sallyport", "other"}
			c["azp"] = "other"
		}, wantErr: ErrRefused},
		{name: "fail/wrong-audience", tamper: func(c map[string]any) { c["aud"] = "another-client" }, wantErr: ErrRefused},
		{name: "fail/wrong-issuer", tamper: func(c map[string]any) { c["iss"] = "https://evil.example" }, wantErr: ErrRefused},
		{name: "fail/expired", tamper: func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }, wantErr: ErrRefused},
		{name: "fail/at-hash-mismatch", tamper: func(c map[string]any) { c["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" }, wantErr: ErrRefused},
		{name: "fail/no-subject", tamper: func(c map[string]any) { c["sub"] = "" }, wantErr: ErrRefused},
		{name: "fail/groups-not-strings", groupsClaim: "groups", tamper: func(c map[string]any) { c["groups"] = map[string]any{"a": 1} }, wantErr: ErrRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iss, o := newTestOIDC(t, tc.groupsClaim)
			if tc.tamper != nil {
				iss.TamperIDTokens(tc.tamper)
			}
			req := NewAuthRequest()
			ex := req
			if tc.exchange != nil {
				ex = tc.exchange(req)
			}
			u, err := oidcSignIn(t, iss, o, req, ex)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || u != nil {
					t.Fatalf("got %+v, %v; want %v", u, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.Issuer != iss.URL || u.Subject != "sub-123" || u.Key() != iss.URL+"#sub-123" || u.Email != "alice@example.org" || !u.EmailVerified {
				t.Errorf("user: got %+v", u)
			}
			if !slices.Equal(u.Groups, tc.wantGroups) {
				t.Errorf("groups: got %q; want %q", u.Groups, tc.wantGroups)
			}
			id := u.Identity()
			if id.Login != "" || id.ID != 0 || !slices.Equal(id.Teams, tc.wantGroups) {
				t.Errorf("identity: got %+v; want no login (never claim a GitHub login), teams %q", id, tc.wantGroups)
			}
		})
	}
}

func TestOIDCDiscoveryUnavailable(t *testing.T) {
	o, err := NewOIDC(OIDCConfig{Issuer: "http://127.0.0.1:1", ClientID: "c", RedirectURL: oidcCallback})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.AuthCodeURL(t.Context(), NewAuthRequest()); !errors.Is(err, ErrUpstream) {
		t.Errorf("got %v; want ErrUpstream", err)
	}
}

func TestStringsClaim(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want []string
		ok   bool
	}{
		{"ok/absent", "", nil, true},
		{"ok/null", "null", nil, true},
		{"ok/string", `"infra"`, []string{"infra"}, true},
		{"ok/empty-string", `""`, nil, true},
		{"ok/list", `["a","","b"]`, []string{"a", "b"}, true},
		{"fail/number", `5`, nil, false},
		{"fail/mixed-list", `["a",1]`, nil, false},
		{"fail/object", `{"a":"b"}`, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := stringsClaim([]byte(tc.raw))
			if tc.ok != (err == nil) || !slices.Equal(got, tc.want) {
				t.Errorf("got %q, %v; want %q ok=%v", got, err, tc.want, tc.ok)
			}
		})
	}
}
