package identity

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/internal/oidctest"
	"github.com/sallyport/sallyport/policy"
)

const actionsAudience = "https://sallyport.example.org"

func TestActionsVerify(t *testing.T) {
	iss := oidctest.New(t)
	other := oidctest.New(t)
	a, err := NewActions(ActionsConfig{Issuer: iss.URL, Audience: actionsAudience, HTTPClient: iss.Client()})
	if err != nil {
		t.Fatal(err)
	}
	none := func(claims map[string]any) string {
		// An unsigned token: header {"alg":"none"}.
		tok := iss.Sign(claims)
		parts := strings.Split(tok, ".")
		return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	}
	tests := []struct {
		name   string
		token  func() string
		want   policy.CIClaims
		errIs  error
		detail string
	}{
		{name: "ok/valid", token: func() string { return iss.Sign(iss.ActionsClaims(actionsAudience)) },
			want: policy.CIClaims{Repository: "example-oss/website", Ref: "refs/heads/main", Environment: "production", Workflow: "Deploy"}},
		{name: "ok/audience-in-list", token: func() string {
			c := iss.ActionsClaims(actionsAudience)
			c["aud"] = []string{"https://elsewhere", actionsAudience}
			return iss.Sign(c)
		}, want: policy.CIClaims{Repository: "example-oss/website", Ref: "refs/heads/main", Environment: "production", Workflow: "Deploy"}},
		{name: "ok/no-environment", token: func() string {
			c := iss.ActionsClaims(actionsAudience)
			delete(c, "environment")
			c["ref"] = "refs/tags/v1.2.3"
			return iss.Sign(c)
		}, want: policy.CIClaims{Repository: "example-oss/website", Ref: "refs/tags/v1.2.3", Workflow: "Deploy"}},
		{name: "fail/wrong-audience", token: func() string { return iss.Sign(iss.ActionsClaims("https://other.example.org")) }, errIs: ErrInvalidToken},
		{name: "fail/no-audience", token: func() string {
			c := iss.ActionsClaims(actionsAudience)
			delete(c, "aud")
			return iss.Sign(c)
		}, errIs: ErrInvalidToken},
		{name: "fail/wrong-issuer-claim", token: func() string {
			c := iss.ActionsClaims(actionsAudience)
			c["iss"] = "https://token.actions.githubusercontent.com"
			return iss.Sign(c)
		}, errIs: ErrInvalidToken},
		{name: "fail/token-of-another-issuer", token: func() string { return other.Sign(other.ActionsClaims(actionsAudience)) }, errIs: ErrInvalidToken},
		{name: "fail/another-issuers-key-claiming-ours", token: func() string { return other.Sign(iss.ActionsClaims(actionsAudience)) }, errIs: ErrInvalidToken},
		{name: "fail/expired", token: func() string {
			c := iss.ActionsClaims(actionsAudience)
			c["iat"] = time.Now().Add(-time.Hour).Unix()
			c["exp"] = time.Now().Add(-time.Minute).Unix()
			return iss.Sign(c)
		}, errIs: ErrInvalidToken},
		{name: "fail/not-yet-valid", token: func() string {
			c := iss.ActionsClaims(actionsAudience)
			c["nbf"] = time.Now().Add(time.Hour).Unix()
			return iss.Sign(c)
		}, errIs: ErrInvalidToken},
		{name: "fail/bad-signature", token: func() string { return iss.SignForged(iss.ActionsClaims(actionsAudience)) }, errIs: ErrInvalidToken},
		{name: "fail/payload-swapped", token: func() string {
			good := strings.Split(iss.Sign(iss.ActionsClaims(actionsAudience)), ".")
			c := iss.ActionsClaims(actionsAudience)
			c["repository"] = "evil/repo"
			evil := strings.Split(iss.Sign(c), ".")
			return good[0] + "." + evil[1] + "." + good[2]
		}, errIs: ErrInvalidToken},
		{name: "fail/alg-none", token: func() string { return none(iss.ActionsClaims(actionsAudience)) }, errIs: ErrInvalidToken},
		{name: "fail/missing-repository", token: func() string {
			c := iss.ActionsClaims(actionsAudience)
			delete(c, "repository")
			return iss.Sign(c)
		}, errIs: ErrInvalidToken, detail: "repository"},
		{name: "fail/missing-ref", token: func() string {
			c := iss.ActionsClaims(actionsAudience)
			c["ref"] = ""
			return iss.Sign(c)
		}, errIs: ErrInvalidToken, detail: "ref"},
		{name: "fail/claim-wrong-type", token: func() string {
			c := iss.ActionsClaims(actionsAudience)
			c["repository"] = 5
			return iss.Sign(c)
		}, errIs: ErrInvalidToken},
		{name: "fail/empty", token: func() string { return "" }, errIs: ErrInvalidToken},
		{name: "fail/garbage", token: func() string { return "not.a.jwt" }, errIs: ErrInvalidToken},
		{name: "fail/too-long", token: func() string { return strings.Repeat("a", 20000) }, errIs: ErrInvalidToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := a.Verify(t.Context(), tc.token())
			if tc.errIs != nil {
				if !errors.Is(err, tc.errIs) || c != nil {
					t.Fatalf("got %+v, %v; want %v", c, err, tc.errIs)
				}
				if tc.detail != "" && !strings.Contains(err.Error(), tc.detail) {
					t.Errorf("error %q does not say what is missing (%s)", err, tc.detail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.CI(); got != tc.want {
				t.Errorf("got %+v; want %+v", got, tc.want)
			}
			if id := c.Identity(); id.CI == nil || *id.CI != tc.want || id.Login != "" {
				t.Errorf("identity: got %+v", id)
			}
			if c.JobWorkflowRef != "example-oss/website/.github/workflows/deploy.yml@refs/heads/main" || c.Subject == "" || c.Issuer != iss.URL || c.JTI == "" {
				t.Errorf("claims: got %+v", c)
			}
		})
	}
}

func TestActionsConfig(t *testing.T) {
	if _, err := NewActions(ActionsConfig{}); err == nil {
		t.Error("no audience: got nil error")
	}
	a, err := NewActions(ActionsConfig{Audience: "x"})
	if err != nil || a.provider.issuer != ActionsIssuer {
		t.Errorf("default issuer: got %v, %v", a, err)
	}
	dead, err := NewActions(ActionsConfig{Issuer: "http://127.0.0.1:1", Audience: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dead.Verify(t.Context(), "a.b.c"); !errors.Is(err, ErrUpstream) {
		t.Errorf("issuer down: got %v; want ErrUpstream", err)
	}
}
