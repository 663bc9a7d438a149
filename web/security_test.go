package web

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/policy"
	"github.com/sallyport/sallyport/store"
)

func TestFormsNeedCSRF(t *testing.T) {
	e := newEnv(t)
	b, _, page := e.signIn(t, "alice")
	csrf := csrfOf(t, page)
	_, pub := newKey(t)
	key := string(ssh.MarshalAuthorizedKey(pub))
	tests := []struct {
		name    string
		csrf    string
		header  map[string]string
		status  int
		content string
	}{
		{"ok/form", csrf, nil, 200, "-cert-v01@openssh.com "},
		{"fail/no-token", "", nil, 403, "not sent from this site"},
		{"fail/wrong-token", csrf + "x", nil, 403, "not sent from this site"},
		{"fail/cross-site", csrf, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, ""},
		{"fail/other-origin", csrf, map[string]string{"Origin": "https://evil.example"}, 403, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/certificate", strings.NewReader(url.Values{"csrf": {tc.csrf}, "public_key": {key}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := b.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d; want %d\n%s", resp.StatusCode, tc.status, body)
			}
			contains(t, "answer", string(body), tc.content)
			if tc.status == 200 && !strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") {
				t.Errorf("certificate is not offered as a download: %v", resp.Header)
			}
		})
	}
	// The API with a session cookie needs the token in a header.
	if st, _, _ := e.requestCert(t, b, "", pub); st != http.StatusForbidden {
		t.Errorf("API with cookie and no X-CSRF-Token: %d; want 403", st)
	}
}

func TestCookies(t *testing.T) {
	tests := []struct {
		name   string
		base   string
		prefix string
		secure bool
	}{
		{"ok/http-loopback", "http://127.0.0.1:8080", "", false},
		{"ok/https", "https://sallyport.example.org", "__Host-", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.BaseURL = tc.base })
			rec := httptest.NewRecorder()
			e.srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.base+"/login?return_to=%2F", nil))
			if rec.Code != http.StatusFound {
				t.Fatalf("status %d", rec.Code)
			}
			cookies := rec.Result().Cookies()
			if len(cookies) != 1 {
				t.Fatalf("cookies = %v", cookies)
			}
			c := cookies[0]
			if c.Name != tc.prefix+loginCookie || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure != tc.secure || c.Path != "/" {
				t.Errorf("cookie = %+v; want %s%s HttpOnly SameSite=Lax Secure=%v", c, tc.prefix, loginCookie, tc.secure)
			}
			for _, h := range []string{"Referrer-Policy", "Content-Security-Policy", "X-Content-Type-Options"} {
				if rec.Header().Get(h) == "" {
					t.Errorf("no %s header", h)
				}
			}
		})
	}
}

// TestCallbackIgnoresHost checks that the OAuth redirect URI comes from the
// configuration, whatever Host the request claims.
func TestCallbackIgnoresHost(t *testing.T) {
	e := newEnv(t)
	req := httptest.NewRequest(http.MethodGet, "http://evil.example/login", nil)
	req.Host = "evil.example"
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	loc := rec.Header().Get("Location")
	if strings.Contains(loc, "evil.example") {
		t.Errorf("sign-in redirect mentions the request's host: %s", loc)
	}
}

func TestRateLimitSignIn(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.SignInPerMinute = 4 })
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var limited int
	for range 10 {
		resp, err := c.Get(e.ts.URL + "/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited < 5 {
		t.Errorf("%d of 10 rapid sign-ins limited; want most", limited)
	}
	_, metrics := get(t, http.DefaultClient, e.ts.URL+"/metrics")
	contains(t, "metrics", metrics, `sallyport_sign_ins_total{provider="github",outcome="rate_limited"}`)
}

func TestRequestSizeLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxRequestBytes = 1024 })
	st, out := e.postJSON(t, "/api/v1/cli/token", "", map[string]string{"code": strings.Repeat("x", 4096), "code_verifier": "y"})
	if st != http.StatusBadRequest || !strings.Contains(out["message"].(string), "too large") {
		t.Errorf("oversized body: %d %v; want 400 too large", st, out)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	e := newEnv(t)
	b, _, page := e.signIn(t, "frank")
	_, pub := newKey(t)
	e.requestCert(t, b, csrfOf(t, page), pub)
	b, _, page = e.signIn(t, "alice")
	e.requestCert(t, b, csrfOf(t, page), pub)
	st, body := get(t, http.DefaultClient, e.ts.URL+"/metrics")
	if st != 200 {
		t.Fatal(st)
	}
	for _, want := range []string{
		`sallyport_sign_ins_total{provider="github",outcome="ok"} 2`,
		`sallyport_certificates_issued_total{kind="user"} 1`,
		`sallyport_certificate_refusals_total{reason="no_grant"} 1`,
		`sallyport_certificate_issue_seconds_count 1`,
		`sallyport_certificate_issue_seconds_bucket{le="+Inf"} 1`,
		"# TYPE sallyport_certificate_issue_seconds histogram",
	} {
		contains(t, "metrics", body, want)
	}
	if st, body := get(t, http.DefaultClient, e.ts.URL+"/healthz"); st != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", st, body)
	}
}

func TestPolicyReload(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	good, err := os.ReadFile(e.policyPath)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content string
		loaded  bool
		outcome string
		reason  string // in the audit record's reason
	}{
		{"fail/syntax", "version: 1\nroles: [", false, audit.OutcomeDenied, ""},
		{"fail/unknown-key", string(good) + "\nextra: 1\n", false, audit.OutcomeDenied, ""},
		{"fail/own-test-contradicts", strings.Replace(string(good), "allow: [deploy@web1, deploy@web2]", "allow: [deploy@web1, deploy@db1]", 1), false, audit.OutcomeDenied, ""},
		// The reason says which test fails and why, as policy test does.
		{"fail/own-test-fails", strings.Replace(string(good), "allow: [deploy@web1, deploy@web2]", "allow: [deploy@web1, deploy@web2, root@db1]", 1), false, audit.OutcomeDenied,
			`test "website team deploys web, never the database" fails: root@db1: denied`},
		{"fail/org-changed", strings.Replace(string(good), "org: example-oss", "org: other-org", 1), false, audit.OutcomeDenied, ""},
		{"ok/website-ttl", strings.Replace(string(good), "hosts: [\"label:web\"]\n    permissions: [pty]", "hosts: [\"label:web\"]\n    ttl: 2h\n    permissions: [pty]", 1), true, audit.OutcomeOK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.pf.Policy()
			if err := os.WriteFile(e.policyPath, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			loaded, err := e.pf.Reload(ctx, "test")
			if loaded != tc.loaded {
				t.Fatalf("loaded = %v (%v); want %v", loaded, err, tc.loaded)
			}
			if !tc.loaded && e.pf.Policy() != before {
				t.Error("a refused policy replaced the one in force")
			}
			events, _ := e.st.AuditEvents(ctx, store.AuditQuery{Type: audit.TypePolicyLoad, Limit: 1})
			if len(events) != 1 || events[0].Outcome != tc.outcome || !strings.Contains(events[0].Reason, tc.reason) {
				t.Errorf("last policy.load event = %+v; want outcome %s, reason with %q", events, tc.outcome, tc.reason)
			}
		})
	}
	// Bob (website) now gets the new role's ttl.
	b, _, page := e.signIn(t, "bob")
	_, pub := newKey(t)
	_, cr, _ := e.requestCert(t, b, csrfOf(t, page), pub)
	if cr == nil || cr.ValidBefore.Sub(cr.ValidAfter) != 2*time.Hour+5*time.Minute {
		t.Errorf("after reload: %+v; want a 2h certificate", cr)
	}
}

func TestPolicyWatch(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.pf.Watch(ctx, 20*time.Millisecond)
	good, _ := os.ReadFile(e.policyPath)
	before := e.pf.Policy()
	changed := strings.Replace(string(good), "ttl: 4h", "ttl: 3h", 1)
	if err := os.WriteFile(e.policyPath, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.pf.Policy() == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if e.pf.Policy() == before {
		t.Fatal("a changed policy file was not reloaded")
	}
}

func TestCICertificate(t *testing.T) {
	iss, actions := newActions(t)
	e := newEnv(t, func(o *Options) { o.CI = actions })
	tests := []struct {
		name   string
		token  func() string
		status int
		errStr string
	}{
		{"ok/deploy", func() string { return iss.Sign(iss.ActionsClaims(ciAudience)) }, 200, ""},
		{"fail/wrong-audience", func() string { return iss.Sign(iss.ActionsClaims("https://other.example")) }, 401, "invalid_token"},
		{"fail/wrong-issuer", func() string {
			c := iss.ActionsClaims(ciAudience)
			c["iss"] = "https://token.actions.githubusercontent.com"
			return iss.Sign(c)
		}, 401, "invalid_token"},
		{"fail/expired", func() string {
			c := iss.ActionsClaims(ciAudience)
			c["exp"] = time.Now().Add(-time.Hour).Unix()
			c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
			c["nbf"] = time.Now().Add(-2 * time.Hour).Unix()
			return iss.Sign(c)
		}, 401, "invalid_token"},
		{"fail/bad-signature", func() string { return iss.SignForged(iss.ActionsClaims(ciAudience)) }, 401, "invalid_token"},
		{"fail/branch-not-allowed", func() string {
			c := iss.ActionsClaims(ciAudience)
			c["ref"] = "refs/heads/feature-x"
			return iss.Sign(c)
		}, 403, "no_grant"},
		{"fail/no-token", func() string { return "" }, 401, "unauthenticated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, pub := newKey(t)
			st, out := e.postJSON(t, "/api/v1/ci/certificate", tc.token(), CertificateRequest{PublicKey: string(ssh.MarshalAuthorizedKey(pub))})
			if st != tc.status {
				t.Fatalf("status = %d (%v); want %d", st, out, tc.status)
			}
			if st != 200 {
				if out["error"] != tc.errStr {
					t.Errorf("error = %v; want %s", out["error"], tc.errStr)
				}
				return
			}
			cert := e.checkCert(t, out["certificate"].(string), pub, "deploy")
			if got := time.Duration(cert.ValidBefore-cert.ValidAfter) * time.Second; got != 15*time.Minute+5*time.Minute {
				t.Errorf("validity = %s; want the role's 15m plus backdating", got)
			}
			if !strings.HasPrefix(cert.KeyId, "ci example-oss/website refs/heads/main env=production serial=") {
				t.Errorf("key ID = %q", cert.KeyId)
			}
			if len(cert.Extensions) != 0 {
				t.Errorf("extensions = %v; want none (the role permits nothing)", cert.Extensions)
			}
			// The bastion decides CI certificates by the identity recorded
			// here: it must decode to exactly the token's claims.
			recs, err := e.st.Certificates(t.Context(), store.CertificateFilter{Serial: cert.Serial})
			if err != nil || len(recs) != 1 {
				t.Fatalf("store record of serial %d: %v, %d records", cert.Serial, err, len(recs))
			}
			claims, err := policy.ParseCIIdentity(recs[0].Identity)
			if err != nil {
				t.Fatalf("recorded identity %q: %v", recs[0].Identity, err)
			}
			if claims.Repository != "example-oss/website" || claims.Ref != "refs/heads/main" || claims.Environment != "production" {
				t.Errorf("recorded identity decodes to %+v", claims)
			}
		})
	}
}
