package web

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/audit"
	"github.com/sallyport/sallyport/internal/githubtest"
	"github.com/sallyport/sallyport/store"
)

func TestSignInAndIssue(t *testing.T) {
	tests := []struct {
		name       string
		login      string
		setup      func(e *env)
		status     int    // of the sign-in
		page       string // in the page after sign-in
		certStatus int    // 0: not asked
		principals []string
		keyID      string
		reason     string
	}{
		{name: "ok/member-with-teams", login: "alice", status: 200, page: "Your access", certStatus: 200,
			principals: []string{"deploy", "root"}, keyID: "alice github:1001 serial="},
		{name: "ok/team-website-only", login: "bob", status: 200, page: "web2", certStatus: 200,
			principals: []string{"deploy"}, keyID: "bob github:1002 serial="},
		{name: "fail/outside-org", login: "erin", status: 403, page: "not a member of the example-oss organisation"},
		{name: "fail/pending-invitation", login: "dave", status: 403, page: "invitation is still pending"},
		{name: "fail/no-matching-role", login: "frank", status: 200, page: "grants you nothing", certStatus: 403,
			reason: "no role names you or your teams (docs)"},
		{name: "fail/github-500", login: "alice", setup: func(e *env) {
			e.gh.InjectFault(githubtest.Fault{Path: "/user/teams", Status: 500})
		}, status: 502, page: "GitHub did not answer properly"},
		{name: "fail/github-malformed-json", login: "alice", setup: func(e *env) {
			e.gh.InjectFault(githubtest.Fault{Path: "/user", Body: `{"login": "alice", "id": `})
		}, status: 502, page: "GitHub did not answer properly"},
		{name: "fail/github-slow", login: "alice", setup: func(e *env) {
			e.gh.InjectFault(githubtest.Fault{Path: "/user", Delay: 5 * time.Second})
		}, status: 502, page: "GitHub did not answer properly"},
		{name: "fail/second-team-page-fails", login: "alice", setup: func(e *env) {
			e.gh.SetPageSize(1)
			e.gh.InjectFault(githubtest.Fault{Path: "/user/teams", Page: 2, Status: 502})
		}, status: 502, page: "GitHub did not answer properly"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if tc.setup != nil {
				tc.setup(e)
			}
			b, status, page := e.signIn(t, tc.login)
			if status != tc.status {
				t.Fatalf("sign-in status = %d; want %d\n%s", status, tc.status, page)
			}
			contains(t, "page", page, tc.page)
			if tc.status != 200 {
				// Refused: no session was made, nothing can be issued.
				_, pub := newKey(t)
				if st, _, _ := e.requestCert(t, b, "x", pub); st != http.StatusUnauthorized {
					t.Errorf("certificate after refused sign-in: status %d; want 401", st)
				}
				certs, _ := e.st.Certificates(context.Background(), store.CertificateFilter{})
				if len(certs) != 0 {
					t.Errorf("%d certificates recorded; want none", len(certs))
				}
				return
			}
			if tc.certStatus == 0 {
				return
			}
			_, pub := newKey(t)
			st, cr, apiErr := e.requestCert(t, b, csrfOf(t, page), pub)
			if st != tc.certStatus {
				t.Fatalf("certificate status = %d (%+v); want %d", st, apiErr, tc.certStatus)
			}
			if st != 200 {
				contains(t, "refusal", apiErr.Message, tc.reason)
				events, _ := e.st.AuditEvents(context.Background(), store.AuditQuery{Type: audit.TypeRefuse})
				if len(events) != 1 || !strings.Contains(events[0].Reason, tc.reason) {
					t.Errorf("refusal audit = %+v; want one with %q", events, tc.reason)
				}
				return
			}
			cert := e.checkCert(t, cr.Certificate, pub, tc.principals[0])
			if !slices.Equal(cert.ValidPrincipals, tc.principals) {
				t.Errorf("principals = %v; want %v", cert.ValidPrincipals, tc.principals)
			}
			if !strings.HasPrefix(cert.KeyId, tc.keyID) {
				t.Errorf("key ID = %q; want prefix %q", cert.KeyId, tc.keyID)
			}
			recorded, err := e.st.Certificates(context.Background(), store.CertificateFilter{Serial: cert.Serial})
			if err != nil || len(recorded) != 1 {
				t.Fatalf("certificate %d not recorded: %v", cert.Serial, err)
			}
			if want := "github:" + strings.Fields(tc.keyID)[1][len("github:"):]; recorded[0].Identity != want {
				t.Errorf("recorded identity = %q; want %q", recorded[0].Identity, want)
			}
		})
	}
}

// TestAliceCertificateTerms pins the terms of an infra member's certificate
// under the reference policy.
func TestAliceCertificateTerms(t *testing.T) {
	e := newEnv(t)
	b, _, page := e.signIn(t, "alice")
	_, pub := newKey(t)
	st, cr, apiErr := e.requestCert(t, b, csrfOf(t, page), pub)
	if st != 200 {
		t.Fatalf("status %d: %+v", st, apiErr)
	}
	cert := e.checkCert(t, cr.Certificate, pub, "root")
	if got := time.Duration(cert.ValidBefore-cert.ValidAfter) * time.Second; got != 4*time.Hour+5*time.Minute {
		t.Errorf("validity = %s; want the role's 4h plus 5m backdating", got)
	}
	var perms []string
	for p := range cert.Extensions {
		perms = append(perms, p)
	}
	slices.Sort(perms)
	if want := []string{"permit-agent-forwarding", "permit-port-forwarding", "permit-pty"}; !slices.Equal(perms, want) {
		t.Errorf("extensions = %v; want %v", perms, want)
	}
	if len(cert.CriticalOptions) != 0 {
		t.Errorf("critical options = %v; want none", cert.CriticalOptions)
	}
	// On web1 and web2 alice's deploy (infra and website roles) gets only
	// what both roles grant; her root (infra only) may forward too: a row
	// each, so that neither is shown with the other's terms.
	var got []string
	for _, h := range cr.Hosts {
		got = append(got, h.Host+":"+strings.Join(h.Principals, ",")+":"+strings.Join(h.Permissions, ","))
	}
	want := []string{
		"web1:deploy:pty", "web1:root:pty,port-forwarding,agent-forwarding",
		"web2:deploy:pty", "web2:root:pty,port-forwarding,agent-forwarding",
		"db1:deploy,root:pty,port-forwarding,agent-forwarding",
		"build1:deploy,root:pty,port-forwarding,agent-forwarding",
	}
	if !slices.Equal(got, want) {
		t.Errorf("hosts = %q; want %q", got, want)
	}
}

// TestMembershipChangesBetweenSignIns signs in twice through one server:
// the second sign-in sees GitHub as it is then.
func TestMembershipChangesBetweenSignIns(t *testing.T) {
	tests := []struct {
		name       string
		change     func(e *env)
		login      string
		principals []string
		keyID      string
	}{
		{"ok/team-removed-less-access", func(e *env) { e.gh.RemoveFromTeam(e.users["alice"], "example-oss", "infra") },
			"alice", []string{"deploy"}, "alice github:1001"},
		{"ok/renamed-login-keeps-id", func(e *env) {
			if _, err := e.gh.RenameUser(e.users["bob"], "robert"); err != nil {
				panic(err)
			}
		}, "robert", []string{"deploy"}, "robert github:1002"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			// A first sign-in of someone else, so the server has state.
			first := "alice"
			if tc.login == "alice" {
				first = "bob"
			}
			if _, st, page := e.signIn(t, first); st != 200 {
				t.Fatalf("first sign-in: %d\n%s", st, page)
			}
			tc.change(e)
			b, st, page := e.signIn(t, tc.login)
			if st != 200 {
				t.Fatalf("sign-in: %d\n%s", st, page)
			}
			_, pub := newKey(t)
			code, cr, apiErr := e.requestCert(t, b, csrfOf(t, page), pub)
			if code != 200 {
				t.Fatalf("certificate: %d %+v", code, apiErr)
			}
			cert := e.checkCert(t, cr.Certificate, pub, tc.principals[0])
			if !slices.Equal(cert.ValidPrincipals, tc.principals) || !strings.HasPrefix(cert.KeyId, tc.keyID+" serial=") {
				t.Errorf("got %v %q; want %v %q", cert.ValidPrincipals, cert.KeyId, tc.principals, tc.keyID)
			}
		})
	}
}

func TestCallbackRefusals(t *testing.T) {
	e := newEnv(t)
	noRedirect := func(c *http.Client) *http.Client {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		return c
	}
	// startAt begins a sign-in and returns the stand-in's callback URL
	// (with code and state) without following it.
	startAt := func(t *testing.T, b *http.Client) string {
		t.Helper()
		c := *b
		noRedirect(&c)
		u := e.ts.URL + "/login?login_hint=alice"
		for range 5 {
			resp, err := c.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			if loc == "" {
				t.Fatalf("no redirect from %s (%d)", u, resp.StatusCode)
			}
			next, _ := url.Parse(u)
			next, _ = next.Parse(loc)
			if next.Path == CallbackPath {
				return next.String()
			}
			u = next.String()
		}
		t.Fatal("never reached the callback")
		return ""
	}
	tests := []struct {
		name   string
		run    func(t *testing.T) (int, string)
		status int
		page   string
	}{
		{"ok/normal", func(t *testing.T) (int, string) {
			b := e.browser(t)
			return get(t, b, startAt(t, b))
		}, 200, "Your access"},
		{"fail/forged-state", func(t *testing.T) (int, string) {
			b := e.browser(t)
			cb, _ := url.Parse(startAt(t, b))
			q := cb.Query()
			q.Set("state", "forged-"+q.Get("state"))
			cb.RawQuery = q.Encode()
			return get(t, b, cb.String())
		}, 400, "not valid any more"},
		{"fail/replayed-state", func(t *testing.T) (int, string) {
			b := e.browser(t)
			cb := startAt(t, b)
			if st, page := get(t, b, cb); st != 200 {
				t.Fatalf("first use: %d %s", st, page)
			}
			return get(t, e.browser(t), cb)
		}, 400, "not valid any more"},
		{"fail/state-from-another-browser", func(t *testing.T) (int, string) {
			cb := startAt(t, e.browser(t))
			return get(t, e.browser(t), cb) // login CSRF: the victim's browser lacks the binding cookie
		}, 400, "started in another browser"},
		{"fail/code-reused-with-fresh-state", func(t *testing.T) (int, string) {
			b := e.browser(t)
			cb, _ := url.Parse(startAt(t, b))
			get(t, b, cb.String())
			cb2, _ := url.Parse(startAt(t, b))
			q := cb2.Query()
			q.Set("code", cb.Query().Get("code"))
			cb2.RawQuery = q.Encode()
			return get(t, b, cb2.String())
		}, 403, "did not confirm the sign-in"},
		{"fail/github-error", func(t *testing.T) (int, string) {
			b := e.browser(t)
			cb, _ := url.Parse(startAt(t, b))
			q := cb.Query()
			q.Del("code")
			q.Set("error", "access_denied")
			cb.RawQuery = q.Encode()
			return get(t, b, cb.String())
		}, 403, "did not let you sign in"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, page := tc.run(t)
			if st != tc.status {
				t.Fatalf("status = %d; want %d\n%s", st, tc.status, page)
			}
			contains(t, "page", page, tc.page)
		})
	}
	events, err := e.st.AuditEvents(context.Background(), store.AuditQuery{Type: audit.TypeLogin})
	if err != nil {
		t.Fatal(err)
	}
	var denied int
	for _, ev := range events {
		if ev.Outcome == audit.OutcomeDenied {
			denied++
		}
		for _, s := range []string{ev.Reason, ev.Subject} {
			if strings.Contains(s, "code=") {
				t.Errorf("audit event carries a code: %+v", ev)
			}
		}
	}
	if denied < 4 {
		t.Errorf("%d refused sign-ins audited; want at least 4", denied)
	}
}

func TestSafeReturnTo(t *testing.T) {
	tests := []struct {
		name string
		path string
		ok   bool
	}{
		{"ok/root", "/", true},
		{"ok/page", "/device", true},
		{"ok/query", "/device?x=1", true},
		{"fail/empty", "", false},
		{"fail/protocol-relative", "//evil.example", false},
		{"fail/backslash", `/\evil.example`, false},
		{"fail/encoded-slashes", "/%2F%2Fevil.example", false},
		{"fail/encoded-backslash", "/%5Cevil.example", false},
		{"fail/double-encoded", "/%252F%252Fevil.example", false},
		{"fail/javascript", "javascript:alert(1)", false},
		{"fail/absolute", "https://evil.example/", false},
		{"fail/scheme-after-slash", "/javascript:alert(1)", false},
		{"fail/tab", "/\t/evil.example", false},
		{"fail/relative", "device", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := safeReturnTo(tc.path); got != tc.ok {
				t.Errorf("safeReturnTo(%q) = %v; want %v", tc.path, got, tc.ok)
			}
		})
	}
	e := newEnv(t)
	b := e.browser(t)
	b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := b.Get(e.ts.URL + "/login?return_to=" + url.QueryEscape("//evil.example"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("/login with return_to=//evil.example: %d; want 400", resp.StatusCode)
	}
}
