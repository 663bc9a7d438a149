package web

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/identity"
	"github.com/sallyport/sallyport/internal/oidctest"
	"github.com/sallyport/sallyport/store"
)

func withOIDC(t *testing.T, iss *oidctest.Issuer) envOption {
	return func(o *Options) {
		redirect := o.BaseURL + OIDCCallbackPath("keycloak")
		iss.RegisterClient("sallyport", "oidc-secret", redirect)
		p, err := identity.NewOIDC(identity.OIDCConfig{Issuer: iss.URL, ClientID: "sallyport", ClientSecret: "oidc-secret",
			RedirectURL: redirect, GroupsClaim: "groups", HTTPClient: iss.Client()})
		if err != nil {
			t.Fatal(err)
		}
		o.OIDC = []OIDCProvider{{Name: "keycloak", SignIn: p}}
	}
}

func TestOIDCSignIn(t *testing.T) {
	iss := oidctest.New(t)
	iss.AddUser("sub-123", map[string]any{"preferred_username": "kc-alice", "groups": []string{"infra"}})
	// An OIDC user name equal to a GitHub login the policy names must not
	// get that login's access.
	iss.AddUser("sub-456", map[string]any{"preferred_username": "octo-admin"})
	e := newEnv(t, withOIDC(t, iss))
	tests := []struct {
		name       string
		subject    string
		tamper     func(map[string]any)
		status     int
		certStatus int
		principals []string
	}{
		{name: "ok/groups-as-teams", subject: "sub-123", status: 200, certStatus: 200, principals: []string{"deploy", "root"}},
		{name: "fail/username-is-not-a-github-login", subject: "sub-456", status: 200, certStatus: 403},
		{name: "fail/wrong-nonce", subject: "sub-123", tamper: func(c map[string]any) { c["nonce"] = "replayed" }, status: 403},
		{name: "fail/wrong-audience", subject: "sub-123", tamper: func(c map[string]any) { c["aud"] = "other-client" }, status: 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iss.TamperIDTokens(tc.tamper)
			defer iss.TamperIDTokens(nil)
			b := e.browser(t)
			status, page := get(t, b, e.ts.URL+"/login/oidc/keycloak?login_hint="+tc.subject)
			if status != tc.status {
				t.Fatalf("sign-in: %d; want %d\n%s", status, tc.status, page)
			}
			if tc.certStatus == 0 {
				return
			}
			_, pub := newKey(t)
			st, cr, apiErr := e.requestCert(t, b, csrfOf(t, page), pub)
			if st != tc.certStatus {
				t.Fatalf("certificate: %d %+v; want %d", st, apiErr, tc.certStatus)
			}
			if st != 200 {
				return
			}
			cert := e.checkCert(t, cr.Certificate, pub, "root")
			if !slices.Equal(cert.ValidPrincipals, tc.principals) || !strings.HasPrefix(cert.KeyId, "kc-alice oidc:keycloak:sub-123 serial=") {
				t.Errorf("got %v %q", cert.ValidPrincipals, cert.KeyId)
			}
			recorded, _ := e.st.Certificates(context.Background(), store.CertificateFilter{Serial: cert.Serial})
			if len(recorded) != 1 || recorded[0].Identity != "oidc:"+iss.URL+"#sub-123" {
				t.Errorf("recorded = %+v; want identity oidc:ISSUER#sub-123", recorded)
			}
		})
	}
	if st, _ := get(t, e.browser(t), e.ts.URL+"/login/oidc/nope"); st != http.StatusNotFound {
		t.Errorf("unknown provider: %d; want 404", st)
	}
}
